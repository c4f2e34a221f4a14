"""Jobs: status, timeline, executions, search; retry and cancel."""

from __future__ import annotations

from services.api.routing import ApiBlueprint, Call
from services.control import cancel_job, retry_job
from services.jobs.models import JOB_ID_PATTERN
from services.pipelines.spec import JobStatus
from services.reads.jobs import (
    JobOverview,
    detail_of,
    job_detail,
    job_executions,
    job_overview,
    job_timeline,
    search_jobs,
    visible_job,
)
from services.reads.queries import JobListQuery
from services.reads.views import JobDetail, JobExecutions, JobPage, Timeline

bp = ApiBlueprint("jobs", __name__)

JOB_ID_SCHEMA = {"type": "string", "pattern": JOB_ID_PATTERN}


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
    return job_detail(call.rt, call.principal, job_id)


@bp.operation(
    "GET",
    "/api/jobs/<jobId>/events",
    summary="The job's timeline, with time spent per stage",
    responses={200: Timeline},
    errors=(401, 404),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def get_job_events(call: Call, job_id: str) -> Timeline:
    return job_timeline(call.rt, call.principal, job_id)


@bp.operation(
    "GET",
    "/api/jobs/<jobId>/executions",
    summary="One record per delivery attempt of the job",
    responses={200: JobExecutions},
    errors=(401, 404),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def get_job_executions(call: Call, job_id: str) -> JobExecutions:
    return job_executions(call.rt, call.principal, job_id)


@bp.operation(
    "GET",
    "/api/jobs/<jobId>/overview",
    summary="The job page in one read: the job, where it is (waiting, retrying, stuck), timeline, attempts",
    responses={200: JobOverview},
    errors=(401, 404),
    path_schemas={"jobId": JOB_ID_SCHEMA},
)
def get_job_overview(call: Call, job_id: str) -> JobOverview:
    """logsLive says whether GET /api/jobs/{jobId}/logs/stream serves the job's log lines here."""
    return job_overview(call.rt, call.principal, job_id, logs_live=call.rt.settings.job_log_source != "none")


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
    return search_jobs(call.rt, call.principal, query)


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
    visible_job(call.rt, call.principal, job_id)
    return detail_of(call.rt, retry_job(call.rt, job_id, actor=call.principal.actor)), 202


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
    visible_job(call.rt, call.principal, job_id)
    job = cancel_job(call.rt, job_id, actor=call.principal.actor)
    return detail_of(call.rt, job), 200 if job.status is JobStatus.CANCELLED else 202
