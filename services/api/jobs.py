"""Jobs: status, timeline, executions, search; retry and cancel."""

from __future__ import annotations

from services.api.queries import JobListQuery, job_cursor, plan_job_list
from services.api.routing import ApiBlueprint, Call
from services.api.schemas import ExecutionView, JobDetail, JobExecutions, JobPage, JobView, Timeline
from services.auth import visible
from services.control import cancel_job, retry_job
from services.errors import Forbidden, JobNotFound
from services.jobs.models import JOB_ID_PATTERN, Job, is_job_id
from services.pipelines.spec import JobStatus

bp = ApiBlueprint("jobs", __name__)

JOB_ID_SCHEMA = {"type": "string", "pattern": JOB_ID_PATTERN}


def load_job(call: Call, job_id: str) -> Job:
    """The job if the caller may see it. A malformed id, a missing job and someone else's job all
    answer the same 404, so nobody learns which jobs exist."""
    if not is_job_id(job_id):
        raise JobNotFound(f"Job {job_id[:128]} not found")
    return visible(call.principal, call.rt.repo.get_job(job_id))


def detail(call: Call, job: Job) -> JobDetail:
    view = JobView.of(job, call.rt.settings, call.rt.repo.clock())
    return JobDetail.model_validate(view.model_dump())


@bp.operation(
    "GET",
    "/api/jobs/<jobId>",
    summary="A job's status, stage, heartbeat, error, cost and links",
    responses={200: JobDetail},
    errors=(401, 404),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def get_job(call: Call, job_id: str) -> JobDetail:
    """Links: the Cloud Trace page of the job's trace and Cloud Logging filtered by its traceId."""
    return detail(call, load_job(call, job_id))


@bp.operation(
    "GET",
    "/api/jobs/<jobId>/events",
    summary="The job's timeline, with time spent per stage",
    responses={200: Timeline},
    errors=(401, 404),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def get_job_events(call: Call, job_id: str) -> Timeline:
    job = load_job(call, job_id)
    return Timeline.of(job.job_id, call.rt.repo.list_events(job.job_id))


@bp.operation(
    "GET",
    "/api/jobs/<jobId>/executions",
    summary="One record per delivery attempt of the job",
    responses={200: JobExecutions},
    errors=(401, 404),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def get_job_executions(call: Call, job_id: str) -> JobExecutions:
    job = load_job(call, job_id)
    executions = call.rt.repo.list_executions(job.job_id)
    return JobExecutions(job_id=job.job_id, executions=[ExecutionView.of(e) for e in executions])


@bp.operation(
    "GET",
    "/api/jobs",
    summary="Search jobs: filters, sort, cursor pagination",
    query=JobListQuery,
    responses={200: JobPage},
    errors=(400, 401, 403),
)
def list_jobs(call: Call, query: JobListQuery) -> JobPage:
    """Non-admins see their own jobs only (userId is theirs, or absent). Filters beyond the most
    selective indexed combination narrow each page in memory: a page may hold fewer than ``limit``
    jobs while nextCursor is set; follow it until it is null."""
    if not call.principal.is_admin:
        if query.userId not in (None, call.principal.subject):
            raise Forbidden("users list only their own jobs")
        query = query.model_copy(update={"userId": call.principal.subject})
    plan = plan_job_list(query)
    page = call.rt.repo.find_jobs(plan.spec)
    now = call.rt.repo.clock()
    return JobPage(
        jobs=[JobView.of(job, call.rt.settings, now) for job in page if plan.post_filter(job)],
        next_cursor=job_cursor(query, page[-1]) if len(page) == query.limit else None,
    )


@bp.operation(
    "POST",
    "/api/jobs/<jobId>/retry",
    summary="Retry a failed, timed-out or dead-lettered job",
    responses={202: JobDetail},
    errors=(401, 404, 409),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def retry(call: Call, job_id: str) -> tuple[JobDetail, int]:
    """A new attempt of the same job, resuming at the stage it stopped in."""
    load_job(call, job_id)
    return detail(call, retry_job(call.rt, job_id, actor=call.principal.actor)), 202


@bp.operation(
    "DELETE",
    "/api/jobs/<jobId>",
    summary="Cancel a job",
    responses={200: JobDetail, 202: JobDetail},
    errors=(401, 404, 409),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def cancel(call: Call, job_id: str) -> tuple[JobDetail, int]:
    """200: cancelled (it was not running, or already cancelled). 202: it is inside a stage; the
    worker stops at the next stage boundary (cancelRequested). 409: it already finished otherwise."""
    load_job(call, job_id)
    job = cancel_job(call.rt, job_id, actor=call.principal.actor)
    return detail(call, job), 200 if job.status is JobStatus.CANCELLED else 202
