"""Execution logs (seed 004): one record per delivery attempt, searchable by workflow and trace."""

from __future__ import annotations

from services.api.queries import ExecutionLogQuery, execution_cursor, execution_log_spec
from services.api.routing import ApiBlueprint, Call
from services.api.schemas import ExecutionLogPage, ExecutionView

bp = ApiBlueprint("execution_logs", __name__)


@bp.operation(
    "GET",
    "/api/execution-logs",
    summary="Search execution records (admins)",
    query=ExecutionLogQuery,
    responses={200: ExecutionLogPage},
    errors=(400, 401, 403),
)
def list_execution_logs(call: Call, query: ExecutionLogQuery) -> ExecutionLogPage:
    """Newest first. Fields as in the DLQ runbook (seed 004): status, retryable, queued_to_dlq,
    attempts, last_error, payload_snapshot, action_duration_ms."""
    call.principal.require_admin("read execution logs")
    page = call.rt.repo.find_executions(execution_log_spec(query))
    return ExecutionLogPage(
        items=[ExecutionView.of(e) for e in page],
        next_cursor=execution_cursor(page[-1]) if len(page) == query.limit else None,
    )
