"""Reads of execution records (seed 004): one per delivery attempt, by workflow and trace."""

from __future__ import annotations

from services.auth.principal import Principal
from services.reads.queries import ExecutionLogQuery, execution_cursor, execution_log_spec
from services.reads.views import ExecutionLogPage, ExecutionView
from services.runtime import Runtime


def execution_logs(rt: Runtime, principal: Principal, query: ExecutionLogQuery) -> ExecutionLogPage:
    """Newest first; admins only (records of every user's jobs)."""
    principal.require_admin("read execution logs")
    page = rt.repo.find_executions(execution_log_spec(query))
    return ExecutionLogPage(
        items=[ExecutionView.of(e) for e in page],
        next_cursor=execution_cursor(page[-1]) if len(page) == query.limit else None,
    )
