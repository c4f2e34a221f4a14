"""Reads of the audit trail of control actions."""

from __future__ import annotations

from services.auth.principal import Principal
from services.errors import Forbidden
from services.reads.queries import AuditQuery, audit_cursor, audit_spec
from services.reads.views import AuditPage, AuditView
from services.runtime import Runtime


def audit_trail(rt: Runtime, principal: Principal, query: AuditQuery) -> AuditPage:
    """Newest first. Admins see every record; others see their own actions."""
    if not principal.is_admin:
        if query.actor not in (None, principal.actor):
            raise Forbidden("users see their own actions only")
        query = query.model_copy(update={"actor": principal.actor})
    page = rt.repo.find_audit(audit_spec(query))
    return AuditPage(
        audit=[AuditView.of(r) for r in page],
        next_cursor=audit_cursor(page[-1]) if len(page) == query.limit else None,
    )
