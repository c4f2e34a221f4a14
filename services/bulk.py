"""Bulk actions by filter: retry every failed or timed-out job matching a filter, or cancel every
queued or running one; a preview counts them first.

Each job is acted on at most once however many runs overlap (two clicks, two operators, the CLI
beside the page): a retry commits only while the job is still at the attempt the run read, a
cancel only while the job has not moved or been asked to stop; the loser counts the job as
skipped. A run only takes jobs last changed before ``updated_before`` (the preview's time), so a
job it retried that failed again is not retried a second time by a later page or an overlapping
run. Every job acted on gets its own audit record, and the run one more with its counts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import combinations

from google.api_core.exceptions import GoogleAPICallError
from pydantic import ConfigDict, Field

from services.control import MAX_REPORTED_FAILURES, audited, queue_reopened
from services.errors import JobtrailError, TransitionConflict
from services.jobs.models import CamelModel, Job
from services.jobs.repository import QuerySpec
from services.jobs.state_machine import Transition
from services.pipelines.registry import get_pipeline, get_steps
from services.pipelines.spec import JobStatus
from services.reads.queries import MAX_ID, JobListQuery, job_cursor, plan_job_list
from services.runtime import Runtime

log = logging.getLogger(__name__)


class BulkAction(StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"


# The statuses each action applies to; a filter's status must be one of them.
ACTIONABLE: dict[BulkAction, tuple[JobStatus, ...]] = {
    BulkAction.RETRY: (JobStatus.FAILED, JobStatus.TIMED_OUT),
    BulkAction.CANCEL: (JobStatus.QUEUED, JobStatus.RUNNING),
}


class JobFilter(CamelModel):
    """Which jobs a bulk action takes (all given fields must match)."""

    model_config = ConfigDict(extra="forbid")

    status: JobStatus | None = Field(None, description="Default: every status the action applies to.")
    pipeline: str | None = Field(None, min_length=1, max_length=64)
    account_id: str | None = Field(None, min_length=1, max_length=MAX_ID)
    scenario_id: str | None = Field(None, min_length=1, max_length=MAX_ID)
    user_id: str | None = Field(None, min_length=1, max_length=MAX_ID)

    def statuses(self, action: BulkAction) -> tuple[JobStatus, ...]:
        allowed = ACTIONABLE[action]
        return allowed if self.status is None else tuple(s for s in allowed if s is self.status)

    def describe(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump(by_alias=True).items() if v is not None}

    def list_query(self, status: JobStatus, limit: int, cursor: str | None = None) -> JobListQuery:
        return JobListQuery(
            status=status,
            pipeline=self.pipeline,
            accountId=self.account_id,
            scenarioId=self.scenario_id,
            userId=self.user_id,
            sort="createdAt",
            limit=limit,
            cursor=cursor,
        )


def count_spec(flt: JobFilter, status: JobStatus) -> QuerySpec:
    """Equalities only: Firestore counts them by merging single-field indexes."""
    given = {
        "status": status.value,
        "pipeline": flt.pipeline,
        "accountId": flt.account_id,
        "scenarioId": flt.scenario_id,
        "userId": flt.user_id,
    }
    return QuerySpec(equals=tuple((k, v) for k, v in given.items() if v is not None))


def count_shapes() -> Iterator[QuerySpec]:
    names = ("pipeline", "account_id", "scenario_id", "user_id")
    for size in range(len(names) + 1):
        for chosen in combinations(names, size):
            yield count_spec(JobFilter.model_validate({n: "x" for n in chosen}), JobStatus.FAILED)


def count_matching(rt: Runtime, action: BulkAction, flt: JobFilter) -> dict[JobStatus, int]:
    return {
        status: int(rt.repo.aggregate("jobs", count_spec(flt, status), count=True)["count"])
        for status in flt.statuses(action)
    }


@dataclass
class BulkReport:
    action: BulkAction
    matched: int  # matching jobs when the run started (at most its limit)
    acted: int = 0
    skipped: int = 0  # moved meanwhile, or acted on by another run
    failed: int = 0
    remaining: int = 0  # still matching when the run ended
    pages: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.acted + self.skipped + self.failed


def run_bulk(
    rt: Runtime,
    action: BulkAction,
    flt: JobFilter,
    *,
    actor: str,
    updated_before: datetime,
    limit: int = 1000,
    page_size: int = 100,
    on_progress: Callable[[BulkReport], None] | None = None,
) -> BulkReport:
    """Act on up to ``limit`` jobs matching ``flt`` that were last changed before
    ``updated_before``; safe to rerun and to run twice at once."""
    bulk_id = uuid.uuid4().hex[:12]
    params = {
        "filter": flt.describe(),
        "limit": limit,
        "updatedBefore": updated_before.isoformat(),
        "bulkId": bulk_id,
    }
    with audited(
        rt, actor=actor, action=f"jobs.bulk_{action.value}", target="jobs", params=params
    ) as outcome:
        report = BulkReport(action=action, matched=min(sum(count_matching(rt, action, flt).values()), limit))
        if on_progress:
            on_progress(report)
        for status in flt.statuses(action):
            cursor: str | None = None
            while report.processed < limit:
                query = flt.list_query(status, min(page_size, limit - report.processed), cursor)
                plan = plan_job_list(query)
                page = rt.repo.find_jobs(plan.spec)
                if not page:
                    break
                for job in page:
                    if plan.post_filter(job) and job.updated_at < updated_before:
                        _tally(report, job, _act(rt, action, job, actor, bulk_id))
                report.pages += 1
                if on_progress:
                    on_progress(report)
                if len(page) < query.limit:
                    break
                cursor = job_cursor(query, page[-1])
        report.remaining = sum(count_matching(rt, action, flt).values())
        outcome.append(
            f"acted {report.acted}, skipped {report.skipped}, failed {report.failed}, remaining {report.remaining}"
        )
        return report


def _act(rt: Runtime, action: BulkAction, job: Job, actor: str, bulk_id: str) -> Job | Exception | None:
    """The job after the action, None if another run or the job itself got there first, or the
    error that stopped it (audited either way when acted on)."""
    try:
        if action is BulkAction.RETRY:
            return _retry_once(rt, job, actor, bulk_id)
        return _cancel_once(rt, job, actor, bulk_id)
    except TransitionConflict:
        return None
    except (JobtrailError, GoogleAPICallError, TimeoutError) as exc:
        log.warning("bulk %s of job %s failed: %s", action.value, job.job_id, type(exc).__name__)
        return exc


def _retry_once(rt: Runtime, job: Job, actor: str, bulk_id: str) -> Job:
    # The precondition comes before the audit: a job another run retried was not acted on here.
    reopened = rt.repo.retry_unless_moved(job.job_id, actor=actor, expected_attempt=job.attempt)
    with audited(
        rt, actor=actor, action="job.retry", target=job.job_id, params={"bulkId": bulk_id}
    ) as outcome:
        queue_reopened(rt, reopened, "retry")
        outcome.append(f"attempt {reopened.attempt}")
    return reopened


def _cancel_once(rt: Runtime, job: Job, actor: str, bulk_id: str) -> Job | None:
    running_stages = {step.start for step in get_steps(job.pipeline)}
    if job.stage not in running_stages:
        moved = rt.repo.transition(
            job.job_id,
            Transition(
                get_pipeline(job.pipeline).cancelled.name,
                actor=actor,
                expected_stage=job.stage,
                message=f"cancelled by {actor}",
            ),
            only_if=lambda current: current.stage == job.stage and not current.status.is_terminal,
        )
        if not moved.applied:
            return None
        rt.repo.record_audit(
            actor=actor,
            action="job.cancel",
            target=job.job_id,
            params={"bulkId": bulk_id},
            result="ok; cancelled",
        )
        return moved.job
    if not rt.repo.request_cancel_once(job.job_id):
        return None
    rt.repo.record_audit(
        actor=actor,
        action="job.cancel",
        target=job.job_id,
        params={"bulkId": bulk_id},
        result="ok; cancel requested",
    )
    return rt.repo.get_job(job.job_id)


def _tally(report: BulkReport, job: Job, result: Job | Exception | None) -> None:
    if isinstance(result, Job):
        report.acted += 1
    elif result is None:
        report.skipped += 1
    else:
        report.failed += 1
        if len(report.failures) < MAX_REPORTED_FAILURES:
            report.failures.append({"jobId": job.job_id, "error": type(result).__name__})
