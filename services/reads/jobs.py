"""Reads of jobs: one job, its timeline, its attempts, and search."""

from __future__ import annotations

from services.auth.principal import Principal, visible
from services.errors import Forbidden, JobNotFound
from services.jobs.models import Job, is_job_id
from services.reads.queries import JobListQuery, job_cursor, plan_job_list
from services.reads.views import ExecutionView, JobDetail, JobExecutions, JobPage, JobView, Timeline
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


def own_query(principal: Principal, query: JobListQuery) -> JobListQuery:
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
