"""Reads of jobs: one job, its timeline, its attempts, search, and the job page's overview."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, TypeVar

from pydantic import Field

from infra.topology import load_topology
from services.auth.principal import Principal, visible
from services.errors import Forbidden, JobNotFound
from services.jobs.models import CamelModel, Execution, ExecutionStatus, Job, heartbeat_of, is_job_id
from services.pipelines.handlers import get_steps
from services.pipelines.spec import JobStatus
from services.reads.queries import JobFilters, JobListQuery, job_cursor, plan_job_list
from services.reads.views import (
    Envelope,
    ExecutionView,
    JobDetail,
    JobExecutions,
    JobPage,
    JobView,
    Timeline,
)
from services.runtime import Runtime


def visible_job(rt: Runtime, principal: Principal, job_id: str) -> Job:
    """The job if ``principal`` may see it. A malformed id, a missing job and someone else's job
    all answer the same 404, so nobody learns which jobs exist."""
    if not is_job_id(job_id):
        raise JobNotFound(f"Job {job_id[:128]} not found")
    return visible(principal, rt.repo.get_job(job_id))


def detail_of(rt: Runtime, job: Job) -> JobDetail:
    view = JobView.of(job, rt.settings, rt.repo.clock())
    return JobDetail.model_validate(view.model_dump())


def job_detail(rt: Runtime, principal: Principal, job_id: str) -> JobDetail:
    return detail_of(rt, visible_job(rt, principal, job_id))


def job_timeline(rt: Runtime, principal: Principal, job_id: str) -> Timeline:
    job = visible_job(rt, principal, job_id)
    return Timeline.of(job.job_id, rt.repo.list_events(job.job_id))


def job_executions(rt: Runtime, principal: Principal, job_id: str) -> JobExecutions:
    job = visible_job(rt, principal, job_id)
    executions = rt.repo.list_executions(job.job_id)
    return JobExecutions(job_id=job.job_id, executions=[ExecutionView.of(e) for e in executions])


Filters = TypeVar("Filters", bound=JobFilters)


def own_query(principal: Principal, query: Filters) -> Filters:
    """``query`` narrowed to what ``principal`` may list: a plain user, their own jobs only."""
    if principal.is_admin:
        return query
    if query.userId not in (None, principal.subject):
        raise Forbidden("users list only their own jobs")
    return query.model_copy(update={"userId": principal.subject})


def search_jobs(rt: Runtime, principal: Principal, query: JobListQuery) -> JobPage:
    query = own_query(principal, query)
    plan = plan_job_list(query)
    page = rt.repo.find_jobs(plan.spec)
    now = rt.repo.clock()
    return JobPage(
        jobs=[JobView.of(job, rt.settings, now) for job in page if plan.post_filter(job)],
        next_cursor=job_cursor(query, page[-1]) if len(page) == query.limit else None,
    )


# ---- the job page ------------------------------------------------------------------------------
SituationKind = Literal["waiting", "retrying", "running", "stuck", "finished"]


class Situation(CamelModel):
    """Where the job is, in words an operator acts on."""

    kind: SituationKind
    detail: str
    next_delivery_after: datetime | None = Field(
        None,
        description="Retrying: Pub/Sub redelivers no sooner than this (the subscription's minimum backoff).",
    )


class JobOverview(Envelope):
    """Everything the job page shows, in one read."""

    job: JobView
    situation: Situation
    timeline: Timeline
    executions: list[ExecutionView]
    logs_live: bool = Field(description="GET /api/jobs/{jobId}/logs/stream serves this job's log lines.")


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


def situation_of(rt: Runtime, job: Job, executions: list[Execution], now: datetime) -> Situation:
    if job.status.is_terminal:
        return Situation(kind="finished", detail=f"{job.status.value} in {job.stage}")
    heartbeat = heartbeat_of(job, now)
    if heartbeat.is_stale:
        return Situation(
            kind="stuck",
            detail=f"nothing expected by {job.stuck_at} happened (a poll, the end of a step, a redelivery); "
            f"last heartbeat {heartbeat.seconds_since_update}s ago in {job.stage}; "
            "the sweeper times it out at the stage's limit",
        )
    last = executions[-1] if executions else None
    if last is not None and last.status is ExecutionStatus.FAIL and not last.queued_to_dlq:
        policy = load_topology().subscriptions.get(last.subscription)
        after = (
            last.finished_at + timedelta(seconds=_seconds(policy.retry_policy.minimum_backoff))
            if policy is not None and last.finished_at is not None
            else None
        )
        return Situation(
            kind="retrying",
            detail=f"attempt {last.attempt} failed ({last.last_error or 'error'}); Pub/Sub delivers it again",
            next_delivery_after=after,
        )
    if job.status is JobStatus.QUEUED:
        return Situation(kind="waiting", detail=f"in the queue since {job.updated_at.isoformat()}")
    if job.stage not in {step.start for step in get_steps(job.pipeline)}:
        waiting_on = "Suno" if job.suno_task_id else "an outside service"
        return Situation(kind="waiting", detail=f"on {waiting_on} in {job.stage} (callback or poll)")
    return Situation(kind="running", detail=f"{job.stage}, attempt {job.attempt}")


def job_overview(rt: Runtime, principal: Principal, job_id: str, *, logs_live: bool) -> JobOverview:
    job = visible_job(rt, principal, job_id)
    executions = sorted(rt.repo.list_executions(job.job_id), key=lambda e: (e.started_at, e.attempt))
    now = rt.repo.clock()
    return JobOverview(
        job=JobView.of(job, rt.settings, now),
        situation=situation_of(rt, job, executions, now),
        timeline=Timeline.of(job.job_id, rt.repo.list_events(job.job_id)),
        executions=[ExecutionView.of(e) for e in executions],
        logs_live=logs_live,
    )
