"""Execution logs (seed 004): one record per delivery attempt, searchable by workflow and trace."""

from __future__ import annotations

from services.api.routing import ApiBlueprint, Call
from services.reads.executions import execution_logs
from services.reads.queries import ExecutionLogQuery
from services.reads.views import ExecutionLogPage

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
    return execution_logs(call.rt, call.principal, query)
