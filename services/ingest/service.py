"""Jobs of pipelines that run elsewhere, reported by the services that run them.

The same job store and state machine as built-in jobs: a duplicate report is a no-op, a move
backwards or out of a finished job is IllegalTransition (409), only an explicit retry reopens a
finished job. What a service may do is its pipeline declaration's ``reporters:`` entry: create and
report on jobs of the pipelines that name it, move them only to the stages listed for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.auth.reporters import Reporter
from services.errors import Forbidden, IllegalTransition, InvalidInput, JobNotFound
from services.ingest.models import (
    AnyReport,
    FailedReport,
    HeartbeatReport,
    IngestJobCreate,
    JobById,
    JobByKey,
    ProgressReport,
    RetryReport,
    StageReport,
    SucceededReport,
)
from services.jobs.models import Job, JobCreate, JobError
from services.jobs.repository import TransitionResult
from services.jobs.state_machine import Transition
from services.pipelines.registry import get_pipeline
from services.pipelines.spec import PipelineSpec
from services.runtime import Runtime
from services.telemetry import get_metrics
from services.telemetry.cost import cost_items
from services.telemetry.logging import bind_job, bind_labels, get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Reported:
    job: Job
    applied: bool


def idempotency_key_of(pipeline: str, key: str) -> str:
    """Reporting services choose their own keys: namespaced so they never meet the webhook's."""
    return f"ingest:{pipeline}:{key}"


def writable_pipeline(reporter: Reporter, name: str) -> PipelineSpec:
    """The pipeline ``reporter`` may write; 400 if none is declared by that name, 403 if not its."""
    spec = get_pipeline(name)
    if reporter.service not in spec.reporters:
        raise Forbidden(f"service {reporter.service} does not report pipeline {name}", pipeline=name)
    return spec


def create_job(
    rt: Runtime, reporter: Reporter, body: IngestJobCreate, *, otel_trace_id: str | None = None
) -> tuple[Job, bool]:
    """The job for ``body.idempotency_key`` in its pipeline's first stage; (job, created)."""
    spec = writable_pipeline(reporter, body.pipeline)
    job, created = rt.repo.create_job(
        JobCreate(
            pipeline=spec.name,
            account_id=body.account_id,
            scenario_id=body.scenario_id,
            source_id=body.source_id,
            user_id=body.user_id,
            idempotency_key=idempotency_key_of(spec.name, body.idempotency_key),
            input=body.input,
        ),
        actor=reporter.actor,
        otel_trace_id=otel_trace_id,
    )
    if created:
        get_metrics().job_started(spec.name)
        with bind_job(job):
            log.info("job %s created by %s", job.job_id, reporter.actor)
    return job, created


def locate_job(rt: Runtime, reporter: Reporter, ref: JobById | JobByKey) -> tuple[str, PipelineSpec]:
    """The job a report names and its pipeline, once scoped to ``reporter``. By key the pipeline
    is in the reference and the key document holds the id: one small read, not the job's (the
    transition reads the job itself, in its transaction)."""
    if isinstance(ref, JobById):
        job = rt.repo.get_job(ref.job_id)
        return job.job_id, writable_pipeline(reporter, job.pipeline)
    spec = writable_pipeline(reporter, ref.pipeline)
    job_id = rt.repo.job_id_for_key(idempotency_key_of(spec.name, ref.idempotency_key))
    if job_id is None:
        raise JobNotFound(f"no {ref.pipeline} job has idempotency key {ref.idempotency_key!r}")
    return job_id, spec


def _forward_stage(reporter: Reporter, spec: PipelineSpec, stage: str) -> str:
    """``stage`` if it is a forward stage of ``spec`` that ``reporter`` may write."""
    if stage not in {s.name for s in spec.stages}:
        # error_field: which stages exist depends on the job's pipeline, which no schema can say.
        raise InvalidInput(
            f"pipeline {spec.name} has no forward stage {stage!r} (failures: type failed)",
            stages=[s.name for s in spec.stages],
            error_field="stage",
        )
    if stage not in spec.reporters[reporter.service]:
        raise Forbidden(f"service {reporter.service} may not write stage {stage} of {spec.name}", stage=stage)
    return stage


def apply_report(rt: Runtime, reporter: Reporter, report: AnyReport) -> Reported:
    """Apply one report to its job; typed errors for anything the state machine or scope refuses."""
    job_id, spec = locate_job(rt, reporter, report.job)
    with bind_labels(jobId=job_id, pipeline=spec.name):
        if isinstance(report, HeartbeatReport | ProgressReport):
            return _heartbeat(rt, job_id, report)
        if isinstance(report, RetryReport):
            reopened = rt.repo.retry(job_id, actor=reporter.actor)
            get_metrics().job_started(spec.name)
            return Reported(reopened, applied=True)
        # A success merges its result into what the job already holds: that needs the job.
        current = rt.repo.get_job(job_id) if isinstance(report, SucceededReport) else None
        result = rt.repo.transition(job_id, _transition_for(reporter, spec, current, report))
        if result.applied:  # a duplicate's usage was charged with the original
            _charge(rt, result.job, report)
            _record_metrics(spec, result)
        return Reported(result.job, result.applied)


def _heartbeat(rt: Runtime, job_id: str, report: HeartbeatReport | ProgressReport) -> Reported:
    text = report.message if isinstance(report, ProgressReport) and report.message else None
    current = rt.repo.heartbeat(job_id, progress_text=text)
    if current.status.is_terminal:
        raise IllegalTransition(
            f"job {job_id} is finished ({current.stage}); only a retry reopens it",
            jobId=job_id,
            stage=current.stage,
        )
    return Reported(current, applied=True)


def _transition_for(
    reporter: Reporter,
    spec: PipelineSpec,
    current: Job | None,
    report: StageReport | FailedReport | SucceededReport,
) -> Transition:
    if isinstance(report, StageReport):
        return Transition(
            _forward_stage(reporter, spec, report.stage), actor=reporter.actor, message=report.message
        )
    if isinstance(report, SucceededReport):
        stage = _forward_stage(reporter, spec, spec.succeeded.name)
        return Transition(
            stage,
            actor=reporter.actor,
            message=report.message,
            fields={"result": {**(current.result if current else {}), **report.result}},
        )
    message = report.message or report.error_code
    return Transition(
        spec.failed.name,
        actor=reporter.actor,
        message=f"{report.error_code}: {message}",
        error=JobError(code=report.error_code, message=message, retryable=report.retryable),
    )


def _charge(rt: Runtime, job: Job, report: AnyReport) -> None:
    for kind, amount in cost_items(rt.settings, report.usage).items():
        rt.repo.add_cost(job.job_id, kind, amount)
        get_metrics().cost(job.pipeline, kind, amount)


def _record_metrics(spec: PipelineSpec, result: TransitionResult) -> None:
    metrics = get_metrics()
    event = result.event
    if event is not None and event.from_stage is not None and event.duration_ms is not None:
        metrics.stage_finished(spec.name, event.from_stage, event.duration_ms / 1000)
    if result.job.status.is_terminal:
        metrics.job_finished(spec.name, result.job.status.value)
