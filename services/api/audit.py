"""The audit trail of control actions (services/reads/audit.py)."""

from __future__ import annotations

from services.api.routing import ApiBlueprint, Call
from services.reads.audit import audit_trail
from services.reads.queries import AuditQuery
from services.reads.views import AuditPage

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
    return audit_trail(call.rt, call.principal, query)
