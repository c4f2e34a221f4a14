"""One-time tickets that open the live stream: POST /api/stream/tickets, then GET /api/stream?ticket=.

A browser's EventSource cannot send an Authorization header, and a bearer token in a URL ends up in
request logs we do not control (Cloud Run's among them). So the page trades its token, in a header,
for a ticket: 32 random bytes, stored only as a hash, valid for ``sse_ticket_seconds`` and for one
stream. Redeeming deletes it in the same transaction, so a URL copied from a log opens nothing. The
ticket is a Firestore document, not a signed token, so any instance can redeem what another issued,
whatever the deployment verifies JWTs with (HS256 secret or the identity provider's JWKS).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from services.api.routing import ApiBlueprint, Call
from services.auth import Principal, PrincipalKind, Role
from services.errors import Unauthorized
from services.jobs.models import CamelModel
from services.runtime import Runtime

bp = ApiBlueprint("stream_tickets", __name__)

TICKET_PARAM = "ticket"
TICKETS_PATH = "/api/stream/tickets"
_TICKET_BYTES = 32
_MAX_TICKET_CHARS = 64


class StreamTicket(CamelModel):
    ticket: str
    expires_at: datetime
    stream_url: str


@bp.operation(
    "POST",
    TICKETS_PATH,
    summary="A one-time ticket that opens the live stream (for EventSource, which sends no headers)",
    responses={201: StreamTicket},
    errors=(401,),
)
def issue_ticket(call: Call) -> tuple[StreamTicket, int]:
    """Valid for one GET /api/stream?ticket=..., within sse_ticket_seconds; the stream then shows
    what the caller may see."""
    ticket = secrets.token_urlsafe(_TICKET_BYTES)
    holder = {
        "subject": call.principal.subject,
        "role": call.principal.role.value,
        "kind": call.principal.kind.value,
    }
    expires = call.rt.repo.create_stream_ticket(
        ticket, holder, timedelta(seconds=call.rt.settings.sse_ticket_seconds)
    )
    url = f"/api/stream?{TICKET_PARAM}={ticket}"
    return StreamTicket(ticket=ticket, expires_at=expires, stream_url=url), 201


def redeem_ticket(rt: Runtime, ticket: str) -> Principal:
    """Who the ticket was issued to; ``Unauthorized`` if it is unknown, used or expired."""
    holder = rt.repo.redeem_stream_ticket(ticket) if 0 < len(ticket) <= _MAX_TICKET_CHARS else None
    if holder is None:
        raise Unauthorized(
            "the stream ticket is unknown, used or expired: POST /api/stream/tickets for a new one"
        )
    return Principal(subject=holder["subject"], role=Role(holder["role"]), kind=PrincipalKind(holder["kind"]))
