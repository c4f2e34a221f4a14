"""The dead-letter queue: what is in it, and replaying one entry or every entry matching a filter."""

from __future__ import annotations

import re

from services.api.routing import ApiBlueprint, Call
from services.api.schemas import (
    ReplayBulk,
    ReplayExecution,
    ReplayFailure,
    ReplayRequest,
    ReplayResult,
)
from services.control import count_dead_letters, replay_dead_letters, replay_job
from services.errors import NotFound
from services.reads.dead_letters import dead_letters, own_dead_letter_filter
from services.reads.jobs import visible_job
from services.reads.queries import DeadLetterQuery
from services.reads.views import DeadLetterPage

bp = ApiBlueprint("dlq", __name__)

# {messageId}-{attempt}
_EXECUTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")


@bp.operation(
    "GET",
    "/api/dlq",
    summary="Dead-lettered jobs not replayed yet, oldest first",
    query=DeadLetterQuery,
    responses={200: DeadLetterPage},
    errors=(400, 401, 403),
)
def list_dead_letters(call: Call, query: DeadLetterQuery) -> DeadLetterPage:
    return dead_letters(call.rt, call.principal, query)


@bp.operation(
    "POST",
    "/api/dlq/replay",
    summary="Replay one dead letter, or every one matching a filter",
    body=ReplayRequest,
    responses={200: ReplayResult},
    errors=(400, 401, 403, 404, 409),
)
def replay(call: Call, body: ReplayRequest) -> ReplayResult:
    """One entry (executionId or jobId; its owner or an admin), or in bulk (admins): every
    dead-lettered job matching ``filter``, up to ``limit`` per call, ``pageSize`` at a time. Each
    job is replayed once, however many replays run at once; call again while ``remaining`` > 0."""
    request = body.root
    if isinstance(request, ReplayBulk):
        call.principal.require_admin("replay the dead-letter queue in bulk")
        report = replay_dead_letters(
            call.rt,
            request.filter,
            actor=call.principal.actor,
            limit=request.limit,
            page_size=request.page_size,
        )
        return ReplayResult(
            mode="bulk",
            matched=report.matched,
            replayed=report.replayed,
            skipped=report.skipped,
            failed=report.failed,
            remaining=report.remaining,
            pages=report.pages,
            failures=[ReplayFailure(job_id=f["jobId"], error=f["error"]) for f in report.failures],
        )
    if isinstance(request, ReplayExecution):
        execution_id = request.execution_id
        job_id = _execution_job(call, execution_id)
    else:
        execution_id, job_id = None, request.job_id
    visible_job(call.rt, call.principal, job_id)
    job = replay_job(call.rt, job_id, actor=call.principal.actor, execution_id=execution_id)
    return ReplayResult(
        mode="single",
        matched=1,
        replayed=1,
        skipped=0,
        failed=0,
        remaining=count_dead_letters(call.rt, own_dead_letter_filter(call.principal)),
        pages=1,
        failures=[],
        job_id=job.job_id,
    )


def _execution_job(call: Call, execution_id: str) -> str:
    """The job of an execution the caller may see; any other execution reads as missing."""
    missing = NotFound(f"execution {execution_id[:200]} not found")
    if not _EXECUTION_ID.match(execution_id):
        raise missing
    execution = call.rt.repo.get_execution(execution_id)
    job = call.rt.repo.get_job(execution.job_id)
    if not call.principal.can_see(job):
        raise missing
    return job.job_id
