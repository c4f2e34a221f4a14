"""The ingest API, served by the API service and published in its /openapi.json.

Reporting services authenticate as themselves (services/auth/reporters.py), before anything of
the request is read; what they may write is checked by services/ingest/service.py.
"""

from __future__ import annotations

import flask

from services.api.routing import ApiBlueprint, current_runtime
from services.auth.reporters import Reporter, authenticate_reporter
from services.ingest import service
from services.ingest.models import IngestedJob, IngestJobCreate, Report, ReportOutcome
from services.jobs.models import Job
from services.telemetry import caller_trace_id_hex

bp = ApiBlueprint("ingest", __name__)
SECURITY = ("reporterKey", "googleIdToken")
_REPORTER_KEY = "jobtrail_reporter"


@bp.before_request
def authenticate() -> None:
    setattr(flask.g, _REPORTER_KEY, authenticate_reporter(current_runtime().settings, flask.request.headers))


def _reporter() -> Reporter:
    reporter: Reporter = flask.g.get(_REPORTER_KEY)
    return reporter


def _job_view(job: Job, created: bool) -> IngestedJob:
    return IngestedJob(
        job_id=job.job_id,
        trace_id=job.trace_id,
        pipeline=job.pipeline,
        stage=job.stage,
        status=job.status.value,
        created=created,
    )


@bp.operation(
    "POST",
    "/api/ingest/jobs",
    summary="Create a job of a declared pipeline (idempotent by idempotencyKey)",
    responses={201: IngestedJob, 200: IngestedJob},
    body=IngestJobCreate,
    errors=(403,),
    authenticated=False,
    security=SECURITY,
)
def create_ingested_job(call: None, body: IngestJobCreate) -> tuple[IngestedJob, int]:
    """201 with the new job; 200 with the existing one when the idempotency key was used before.
    traceId is accountId-scenarioId-sourceId."""
    job, created = service.create_job(
        current_runtime(), _reporter(), body, otel_trace_id=caller_trace_id_hex(dict(flask.request.headers))
    )
    return _job_view(job, created), 201 if created else 200


@bp.operation(
    "POST",
    "/api/ingest/reports",
    summary="Report what happened to a job: stage reached, heartbeat, progress, failed, succeeded, retry",
    responses={200: ReportOutcome},
    body=Report,
    errors=(403, 404, 409),
    authenticated=False,
    security=SECURITY,
)
def report_job(call: None, body: Report) -> ReportOutcome:
    """A duplicate is a no-op (applied false); a move backwards, or anything but a retry on a
    finished job, is 409."""
    reported = service.apply_report(current_runtime(), _reporter(), body.root)
    return ReportOutcome(
        job_id=reported.job.job_id,
        stage=reported.job.stage,
        status=reported.job.status.value,
        applied=reported.applied,
        kind=body.root.type,
    )
