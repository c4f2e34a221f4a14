"""The DLQ analyzer: a dead-lettered message becomes a recorded, visible, replayable failure.

Pub/Sub republishes a message that failed max_delivery_attempts times to the subscription's
dead-letter topic, keeping its data and attributes and adding CloudPubSubDeadLetter* attributes.
The message id is new, so the job (from the payload) is the key: its latest execution is marked
``queued_to_dlq`` (or one is recorded if the worker never got as far), and the job fails with
DEAD_LETTERED, retryable, so a person can replay it once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass

from services.errors import InvalidInput, JobNotFound, TransitionConflict
from services.jobs.models import Execution, ExecutionStatus, JobError
from services.jobs.state_machine import Transition
from services.messages import PushEnvelope
from services.pipelines.registry import get_pipeline
from services.runtime import Runtime
from services.telemetry import bind_job, get_metrics

log = logging.getLogger(__name__)

SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
SOURCE_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


# The worker records a failed attempt as "CODE: message" (services/worker/engine.py).
_ERROR_CODE = re.compile(r"^([A-Z][A-Z0-9_]{0,63}):")


def error_code_of(last_error: str | None) -> str | None:
    """The code of an attempt's recorded error, if it has one."""
    match = _ERROR_CODE.match(last_error or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class DeadLetterRecord:
    job_id: str | None
    execution_id: str | None
    outcome: str  # RECORDED | UNKNOWN_JOB | BAD_PAYLOAD


def record_dead_letter(rt: Runtime, envelope: PushEnvelope) -> DeadLetterRecord:
    attributes = envelope.message.attributes
    try:
        message = envelope.job_message()
    except InvalidInput:
        job_id = attributes.get("jobId")
        if not job_id:
            log.error("dead letter %s has no readable job; parked for a person", envelope.message.message_id)
            return DeadLetterRecord(None, None, "BAD_PAYLOAD")
    else:
        job_id = message.job_id
    try:
        job = rt.repo.get_job(job_id)
    except JobNotFound:
        log.error("dead letter %s names unknown job %s", envelope.message.message_id, job_id)
        return DeadLetterRecord(job_id, None, "UNKNOWN_JOB")

    source = attributes.get(SOURCE_SUBSCRIPTION, envelope.subscription_name)
    attempts = int(attributes.get(SOURCE_DELIVERY_COUNT, "0") or 0)
    executions = rt.repo.list_executions(job.job_id)
    cause = None
    if executions:
        execution_id = executions[-1].execution_id
        cause = error_code_of(executions[-1].last_error)
        rt.repo.mark_dead_lettered(execution_id)
    else:
        execution = Execution(
            execution_id=rt.repo.execution_id(envelope.message.message_id, max(attempts, 1)),
            message_id=envelope.message.message_id,
            job_id=job.job_id,
            workflow=job.pipeline,
            subscription=source,
            attempt=max(attempts, 1),
            status=ExecutionStatus.FAIL,
            started_at=rt.repo.clock(),
            last_error="dead-lettered before any attempt was recorded",
            retryable=True,
            queued_to_dlq=True,
            payload_snapshot={"attributes": attributes},
            trace_id=job.trace_id,
            account_id=job.account_id,
            scenario_id=job.scenario_id,
            source_id=job.source_id,
        )
        rt.repo.start_execution(execution)
        execution_id = execution.execution_id

    spec = get_pipeline(job.pipeline)
    reason = f"dead-lettered from {source} after {attempts or 'max'} delivery attempts"
    # A job already finished (cancelled meanwhile, say) stays as it is: the execution record is
    # what matters then. Pub/Sub may deliver the dead letter twice; only the delivery whose write
    # failed the job counts it, so worker_dlq_total equals the dead-lettered jobs.
    applied = False
    with contextlib.suppress(TransitionConflict):
        applied = rt.repo.transition(
            job.job_id,
            Transition(
                spec.failed.name,
                actor="dlq-analyzer",
                message=reason,
                error=JobError(code="DEAD_LETTERED", message=reason, retryable=True, cause=cause),
            ),
        ).applied
    if applied:
        get_metrics().dead_lettered(job.pipeline)
        with bind_job(job):
            log.error("job %s dead-lettered: %s", job.job_id, reason)
    return DeadLetterRecord(job.job_id, execution_id, "RECORDED")
