"""The pipeline worker: one Pub/Sub delivery in, one ack or nack out, and a tracked job in between.

For each delivery it
1. decodes the message (bad payload: the job, if known, fails; ack, since retrying cannot help);
2. reads the job with a short timeout: that read is the dependency check (Firestore unreachable:
   nack, nothing written);
3. nacks without work while the queue is paused;
4. opens the execution record ``{messageId}-{deliveryAttempt}``; a redelivery of an attempt that is
   already recorded is acked if that attempt finished and nacked while it is still running;
5. stops at once if the job was cancelled, else runs the job's remaining steps, stage by stage;
6. closes the execution and maps the outcome: done, cancelled or non-retryable -> ack;
   retryable (infrastructure, timeouts, unknown errors) -> nack, so Pub/Sub retries with backoff
   and, after max_delivery_attempts, dead-letters it (see services/dlq.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.api_core.exceptions import GoogleAPICallError, RetryError

from infra.topology import load_topology
from services.errors import IllegalTransition, InvalidInput, JobNotFound, TransitionConflict
from services.jobs.models import Execution, ExecutionStatus, Job, JobError
from services.jobs.repository import TransitionResult, new_request_id
from services.jobs.state_machine import Transition
from services.messages import JobMessage, PushEnvelope
from services.pipelines.handlers import get_steps
from services.pipelines.registry import get_pipeline
from services.pipelines.spec import JobStatus, PipelineSpec
from services.pipelines.steps import NonRetryableError, RetryLater, Step, StepContext, StepResult
from services.runtime import Runtime
from services.telemetry import bind_job, bind_labels, consumer_span, get_metrics, get_tracer
from services.telemetry.metrics import Outcome
from services.telemetry.redaction import Redactor, secret_values

log = logging.getLogger(__name__)
tracer = get_tracer(__name__)

# Failures that mean "the world is broken right now", not "this job is wrong": always retried.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    GoogleAPICallError,
    RetryError,
    TimeoutError,
    FutureTimeout,
    ConnectionError,
)


def is_infrastructure_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the world is broken right now. The second test: the Firestore client
    gives up on a contended transaction (or one that meets a held lock) with a ValueError raised
    from the last Aborted."""
    return isinstance(exc, INFRASTRUCTURE_ERRORS) or isinstance(exc.__cause__, INFRASTRUCTURE_ERRORS)


HANDLER_TIMEOUT = "HANDLER_TIMEOUT"


class Verdict(StrEnum):
    ACK = "ack"
    NACK = "nack"


@dataclass(frozen=True)
class DeliveryOutcome:
    verdict: Verdict
    reason: str  # a stable code: DONE, CANCELLED, FAILED, RETRY, QUEUE_PAUSED, BUSY...
    job_id: str | None = None
    execution_id: str | None = None

    @property
    def http_status(self) -> int:
        """Push semantics: any 2xx acks (200 keeps the JSON body readable); 429 and 503 make Pub/Sub
        back off and redeliver."""
        if self.verdict is Verdict.ACK:
            return 200
        return 429 if self.reason == "BUSY" else 503


class JobCancelled(Exception):
    """The job was cancelled (by the API before this delivery, or by this attempt at a boundary)."""


def _took(result: TransitionResult) -> Job:
    """The job after a worker's transition (the repository counts it finished if this very write
    finished it: of two overlapping attempts, only one transaction wrote the last stage)."""
    return result.job


def classify(exc: BaseException) -> tuple[str, bool]:
    """(error code, retryable) for an exception raised while running a step."""
    from services.external.resilience import ExternalError, PermanentExternalError

    if isinstance(exc, NonRetryableError):
        return exc.code, False
    if isinstance(exc, RetryLater):
        return exc.code, True
    if isinstance(exc, PermanentExternalError):
        return exc.code, False
    if isinstance(exc, ExternalError):
        return exc.code, True
    if isinstance(exc, FutureTimeout | TimeoutError):
        return HANDLER_TIMEOUT, True
    if is_infrastructure_error(exc):
        return "DEPENDENCY_UNAVAILABLE", True
    return "UNEXPECTED_ERROR", True


def queue_name(rt: Runtime, subscription: str) -> str:
    """The topology name of a subscription (what the control plane pauses)."""
    return subscription.removeprefix(rt.settings.topic_prefix)


class Worker:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.repo = rt.repo
        # How long Pub/Sub may take to redeliver a nacked message, by subscription (its backoff).
        self._redelivery_within = {
            name: float(sub.retry_policy.maximum_backoff.removesuffix("s"))
            for name, sub in load_topology().subscriptions.items()
        }
        # This deployment's own secrets, whether or not telemetry has registered them yet.
        self._redactor = Redactor(secret_values(rt.settings))
        self._slots = threading.BoundedSemaphore(rt.settings.worker_max_concurrency)
        self._deliveries = ThreadPoolExecutor(
            max_workers=rt.settings.worker_max_concurrency, thread_name_prefix="delivery"
        )
        # Handlers run here so a hung call can be abandoned after handler_timeout_seconds.
        self._handlers = ThreadPoolExecutor(
            max_workers=rt.settings.worker_max_concurrency * 2, thread_name_prefix="step"
        )

    def handle(self, envelope: PushEnvelope) -> DeliveryOutcome:
        """Answer within the delivery deadline, whatever hangs below.

        A Firestore or service call that stops answering would otherwise hold the push request (and
        the Cloud Run instance) until gRPC's own deadline. Past ``delivery_deadline_seconds`` the
        worker nacks; the abandoned attempt finishes or fails on its own, and the transitions'
        preconditions keep it from clashing with the redelivery.
        """
        # A full instance sheds load instead of queueing it in memory: Pub/Sub holds the message.
        if not self._slots.acquire(blocking=False):
            return DeliveryOutcome(Verdict.NACK, "BUSY")
        future = self._deliveries.submit(contextvars.copy_context().run, self._handle_traced, envelope)
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return future.result(timeout=self.rt.settings.delivery_deadline_seconds)
        except FutureTimeout:
            log.warning(
                "delivery %s passed its deadline; nacked, the attempt goes on in the background",
                envelope.message.message_id,
            )
            return DeliveryOutcome(Verdict.NACK, "DEADLINE_EXCEEDED")

    def _handle_traced(self, envelope: PushEnvelope) -> DeliveryOutcome:
        request_id = new_request_id(self.repo.clock())
        with (
            bind_labels(requestId=request_id),
            consumer_span(
                f"worker {envelope.subscription_name}",
                envelope.message.attributes,
                attributes={"messaging.message.id": envelope.message.message_id},
            ) as span,
        ):
            outcome = self._handle(envelope, request_id)
            span.set_attribute("jobtrail.outcome", outcome.reason)
            log.info(
                "delivery %s: %s (%s)",
                envelope.message.message_id,
                outcome.verdict,
                outcome.reason,
                extra={"fields": {"jobId": outcome.job_id, "executionId": outcome.execution_id}},
            )
        return outcome

    def _handle(self, envelope: PushEnvelope, request_id: str) -> DeliveryOutcome:
        try:
            message = envelope.job_message()
        except InvalidInput as exc:
            return self._reject_payload(envelope, exc)
        try:
            job = self.repo.get_job(message.job_id, timeout=self.rt.settings.dependency_timeout_seconds)
            paused = self.repo.get_queue(queue_name(self.rt, envelope.subscription_name)).paused
        except JobNotFound:
            log.error("message %s names unknown job %s; acked", envelope.message.message_id, message.job_id)
            return DeliveryOutcome(Verdict.ACK, "UNKNOWN_JOB", job_id=message.job_id)
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("Firestore unreachable (%s); nacking without side effects", type(exc).__name__)
            return DeliveryOutcome(Verdict.NACK, "DEPENDENCY_DOWN", job_id=message.job_id)
        if paused:
            return DeliveryOutcome(Verdict.NACK, "QUEUE_PAUSED", job_id=job.job_id)

        execution = self._open_execution(envelope, message, job, request_id)
        if execution is None:
            attempt = envelope.delivery_attempt or 1
            existing = self.repo.get_execution(self.repo.execution_id(envelope.message.message_id, attempt))
            if existing.status is ExecutionStatus.IN_PROGRESS:
                return DeliveryOutcome(Verdict.NACK, "DUPLICATE_IN_FLIGHT", job_id=job.job_id)
            return DeliveryOutcome(
                Verdict.ACK, "DUPLICATE", job_id=job.job_id, execution_id=existing.execution_id
            )
        with bind_job(job), get_metrics().in_flight(job.pipeline):
            return self._run(job, execution)

    def _reject_payload(self, envelope: PushEnvelope, exc: InvalidInput) -> DeliveryOutcome:
        """A payload no retry can fix. If the attributes name a job, that job fails with the reason."""
        job_id = envelope.message.attributes.get("jobId")
        log.error("poison payload in message %s: %s", envelope.message.message_id, exc.message)
        if job_id:
            with contextlib.suppress(JobNotFound, TransitionConflict):
                self._fail(job_id, "BAD_PAYLOAD", exc.message, retryable=False)
        return DeliveryOutcome(Verdict.ACK, "BAD_PAYLOAD", job_id=job_id)

    def _open_execution(
        self, envelope: PushEnvelope, message: JobMessage, job: Job, request_id: str
    ) -> Execution | None:
        """The record of this delivery attempt; None if Pub/Sub delivered this attempt twice."""
        attempt = envelope.delivery_attempt or 1
        execution = Execution(
            execution_id=self.repo.execution_id(envelope.message.message_id, attempt),
            message_id=envelope.message.message_id,
            job_id=job.job_id,
            workflow=job.pipeline,
            subscription=envelope.subscription_name,
            attempt=attempt,
            started_at=self.repo.clock(),
            # What the job was started with (seed 004: the event's original data), which a replay
            # runs again, beside the message that carried it; redacted, as the record outlives it.
            payload_snapshot=self._redactor.redact(
                {
                    "input": job.input,
                    "message": {
                        "data": message.model_dump(mode="json"),
                        "attributes": envelope.message.attributes,
                    },
                }
            ),
            trace_id=job.trace_id,
            account_id=job.account_id,
            scenario_id=job.scenario_id,
            source_id=job.source_id,
            user_id=job.user_id,
            request_id=request_id,
        )
        if envelope.delivery_attempt is None:
            return self.repo.start_next_execution(execution)
        return execution if self.repo.start_execution(execution) else None

    def _run(self, job: Job, execution: Execution) -> DeliveryOutcome:
        artifacts: dict[str, str] = {}  # filled by each step this attempt finishes
        close = functools.partial(self._close, execution, started=time.monotonic(), artifacts=artifacts)
        try:
            final = self._run_steps(get_pipeline(job.pipeline), job, artifacts)
        except JobCancelled:
            close(ExecutionStatus.CANCELLED, counted="success")
            return DeliveryOutcome(Verdict.ACK, "CANCELLED", job.job_id, execution.execution_id)
        except TransitionConflict as exc:
            # Someone else (a concurrent delivery, the sweeper, a cancel) moved the job under us.
            # Ack only once the job is finished: while it is active, a nack keeps this message as
            # the job's lifeline, and the redelivery resumes from wherever the job then stands.
            finished = self.repo.get_job(job.job_id).status.is_terminal
            close(
                ExecutionStatus.FAIL,
                counted="success" if finished else "failure",
                last_error=f"superseded: {exc.message}",
                retryable=not finished,
            )
            if finished:
                return DeliveryOutcome(Verdict.ACK, "SUPERSEDED", job.job_id, execution.execution_id)
            self._mark_retrying(job, execution)
            return DeliveryOutcome(Verdict.NACK, "CONFLICT", job.job_id, execution.execution_id)
        except Exception as exc:
            code, retryable = classify(exc)
            message = f"{code}: {exc}"
            log.warning("job %s attempt failed (%s, retryable=%s)", job.job_id, code, retryable)
            if not retryable:
                with contextlib.suppress(TransitionConflict):
                    self._fail(job.job_id, code, str(exc), retryable=False)
            # A handler that overran handler_timeout_seconds is a timeout, not a failure, on record:
            # what an operator looks for when attempts hang (runbooks/dlq.md).
            status = ExecutionStatus.TIMEOUT if code == HANDLER_TIMEOUT else ExecutionStatus.FAIL
            close(status, counted="failure", last_error=message, retryable=retryable)
            if retryable:
                self._mark_retrying(job, execution)
                return DeliveryOutcome(Verdict.NACK, "RETRY", job.job_id, execution.execution_id)
            return DeliveryOutcome(Verdict.ACK, "FAILED", job.job_id, execution.execution_id)
        status = ExecutionStatus.CANCELLED if final.status is JobStatus.CANCELLED else ExecutionStatus.SUCCESS
        close(status, counted="success")
        return DeliveryOutcome(Verdict.ACK, "DONE", job.job_id, execution.execution_id)

    def _mark_retrying(self, job: Job, execution: Execution) -> None:
        """Best effort, after the attempt's record is closed: a mark that cannot be written (Firestore
        down, or the job's document contended or locked) must not turn the attempt into an
        unanswered push, uncounted by worker_failure_total though its record says fail."""
        within = self._redelivery_within.get(queue_name(self.rt, execution.subscription), 600.0)
        try:
            self.repo.mark_retrying(job.job_id, within)
        except Exception as exc:
            if not is_infrastructure_error(exc):
                raise
            log.warning("could not mark job %s as retrying (%s)", job.job_id, type(exc).__name__)

    def _run_steps(self, spec: PipelineSpec, job: Job, artifacts: dict[str, str]) -> Job:
        for step in get_steps(spec.name):
            if spec.rank(job.stage) >= spec.rank(step.done):
                continue  # finished by an earlier attempt: never repeat a finished stage
            job = self._check_boundary(spec, job)
            if job.status.is_terminal:
                return job
            if job.stage != step.start:
                job = _took(
                    self.repo.transition(
                        job.job_id, Transition(step.start, actor="worker", expected_stage=job.stage)
                    )
                )
            job = self._run_step(step, job, artifacts)
        return job

    def _check_boundary(self, spec: PipelineSpec, job: Job) -> Job:
        """Between stages: re-read the job so a cancel or a sweep since the last step is seen."""
        job = self.repo.get_job(job.job_id)
        if job.cancel_requested and not job.status.is_terminal:
            _took(
                self.repo.transition(
                    job.job_id,
                    Transition(spec.cancelled.name, actor="worker", message="cancelled at a stage boundary"),
                )
            )
            raise JobCancelled(job.job_id)
        if job.status is JobStatus.CANCELLED:
            raise JobCancelled(job.job_id)
        return job

    def _run_step(self, step: Step, job: Job, artifacts: dict[str, str]) -> Job:
        current = {"job": job}

        def advance(stage: str, **fields: Any) -> Job:
            current["job"] = _took(
                self.repo.transition(job.job_id, Transition(stage, actor="worker", fields=fields))
            )
            return current["job"]

        ctx = StepContext(rt=self.rt, job=job, actor="worker", advance=advance)
        with (
            bind_labels(stage=step.start),
            tracer.start_as_current_span(
                f"stage {step.name}",
                attributes={
                    "jobtrail.job_id": job.job_id,
                    "jobtrail.stage": step.start,
                    "jobtrail.pipeline": job.pipeline,
                },
            ),
        ):
            started = time.monotonic()
            # The handler thread inherits this one's context: its logs keep the job's labels and
            # its outgoing calls become children of this stage's span.
            future = self._handlers.submit(contextvars.copy_context().run, step.handler, ctx)
            result = self._await_step(future, job, step)
            seconds = time.monotonic() - started
            artifacts.update(result.artifacts)
            self._record_usage(job, result, seconds)
            before = current["job"]
            done = _took(
                self.repo.transition(
                    job.job_id,
                    Transition(step.done, actor="worker", expected_stage=before.stage, fields=result.fields),
                )
            )
        get_metrics().stage_finished(job.pipeline, step.start, seconds)
        log.info("job %s: %s done in %.3fs", job.job_id, step.name, seconds)
        return done

    def _await_step(self, future: Future[StepResult], job: Job, step: Step) -> StepResult:
        """The handler's result within handler_timeout_seconds (else FutureTimeout). A cancel
        requested meanwhile is seen within cancel_check_seconds: the job is cancelled where it
        stands and the handler's thread abandoned (its outside call may still finish; its result is
        dropped and its writes meet a finished job)."""
        settings = self.rt.settings
        deadline = time.monotonic() + settings.handler_timeout_seconds
        while True:
            try:
                return future.result(
                    timeout=max(0.0, min(settings.cancel_check_seconds, deadline - time.monotonic()))
                )
            except FutureTimeout:
                if time.monotonic() >= deadline:
                    raise
            if self.repo.get_job(job.job_id).cancel_requested:
                self._cancel_mid_step(job, step)

    def _cancel_mid_step(self, job: Job, step: Step) -> None:
        spec = get_pipeline(job.pipeline)
        message = f"cancelled during step {step.name} in {step.start}; its outside call was abandoned"
        with contextlib.suppress(TransitionConflict, IllegalTransition):
            _took(
                self.repo.transition(
                    job.job_id, Transition(spec.cancelled.name, actor="worker", message=message)
                )
            )
        if self.repo.get_job(job.job_id).status is JobStatus.CANCELLED:
            log.info("job %s: %s", job.job_id, message)
            raise JobCancelled(job.job_id)

    def _record_usage(self, job: Job, result: StepResult, seconds: float) -> None:
        from services.telemetry.cost import cost_items

        usage = {"compute_seconds": seconds, **result.usage}
        for kind, amount in cost_items(self.rt.settings, usage).items():
            self.repo.add_cost(job.job_id, kind, amount)
            get_metrics().cost(job.pipeline, kind, amount)

    def _fail(self, job_id: str, code: str, message: str, *, retryable: bool) -> None:
        job = self.repo.get_job(job_id)
        spec = get_pipeline(job.pipeline)
        if job.status.is_terminal:
            return
        _took(
            self.repo.transition(
                job_id,
                Transition(
                    spec.failed.name,
                    actor="worker",
                    message=f"{code}: {message}",
                    error=JobError(code=code, message=message, retryable=retryable),
                ),
            )
        )

    def _close(
        self,
        execution: Execution,
        status: ExecutionStatus,
        *,
        counted: Outcome,
        started: float,
        last_error: str | None = None,
        retryable: bool | None = None,
        artifacts: dict[str, str] | None = None,
    ) -> None:
        """Close the attempt's record and count it in the same step: whatever follows (marking the
        job retrying can wait seconds on a contended job) may die with the instance, and the
        counters must still agree with the records."""
        try:
            self.repo.finish_execution(
                execution.execution_id,
                status,
                last_error=last_error,
                retryable=retryable,
                artifact_paths=artifacts,
            )
        except INFRASTRUCTURE_ERRORS:
            # The outcome still stands (a nack still retries); the record shows in_progress until
            # the next attempt's record supersedes it.
            log.warning("could not close execution %s", execution.execution_id)
        get_metrics().record_execution(execution.workflow, counted, time.monotonic() - started)
