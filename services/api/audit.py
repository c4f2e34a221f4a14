"""The audit trail of control actions."""

from __future__ import annotations

from services.api.queries import AuditQuery, audit_cursor, audit_spec
from services.api.routing import ApiBlueprint, Call
from services.api.schemas import AuditPage, AuditView
from services.errors import Forbidden

bp = ApiBlueprint("audit", __name__)


@bp.operation(
    "GET",
    "/api/audit",
    summary="Who did what, when, with which parameters and result",
    query=AuditQuery,
    responses={200: AuditPage},
    errors=(400, 401, 403),
)
def list_audit(call: Call, query: AuditQuery) -> AuditPage:
    """Newest first. Admins see every record; others see their own actions."""
    if not call.principal.is_admin:
        if query.actor not in (None, call.principal.actor):
            raise Forbidden("users see their own actions only")
        query = query.model_copy(update={"actor": call.principal.actor})
    page = call.rt.repo.find_audit(audit_spec(query))
    return AuditPage(
        audit=[AuditView.of(r) for r in page],
        next_cursor=audit_cursor(page[-1]) if len(page) == query.limit else None,
    )
