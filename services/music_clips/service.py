"""Music Clips' service calls: start a run, apply a Suno result, show a job (seed 002's shapes).

SUNO_NO_CREDITS: generation runs in the worker, after runOnce has answered, so runOnce looks at
Suno's balance first (services/music_clips/credits.py: a 0.5 s budget, the answer reused for 30 s,
so runOnce stays under seed 002's 2 s however slow Suno is) and answers 402 at once when the
balance cannot pay for a generation; the job is created all the same and marked failed, so it can
be traced. If the balance cannot be told in time, runOnce does not guess: it queues the job, and a
generate refused for credits later fails the job with error code SUNO_NO_CREDITS, which
GET /jobs/{jobId} shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic.alias_generators import to_camel

from services.errors import JobNotFound, JobtrailError, TransitionConflict
from services.external.suno import SunoCallback, SunoRecord
from services.jobs.models import JOB_ID_PATTERN, Job, JobError, build_job, heartbeat_of
from services.jobs.state_machine import Transition
from services.music_clips.config import suno_callback_url
from services.pipelines.music_clips import CALLBACK_URL_MESSAGE, CALLBACK_URL_NOT_CONFIGURED, MUSIC_CLIPS
from services.publishing import publish_job
from services.runtime import Runtime
from services.telemetry import current_trace_id_hex, get_metrics
from services.telemetry.logging import bind_job, get_logger

log = get_logger(__name__)

SCENARIO_ID = "music_clips"
NO_CREDITS_MESSAGE = "Недостаточно кредитов Suno для генерации. Пополните баланс."
ACCEPTED_MESSAGE = "Генерация запущена, используйте GET /api/music-clips/jobs/:jobId для проверки статуса"


class CallbackUrlNotConfigured(JobtrailError):
    code = CALLBACK_URL_NOT_CONFIGURED
    http_status = 400


class SunoCreditsExhausted(JobtrailError):
    code = "SUNO_NO_CREDITS"
    http_status = 402


class RunOnceRequest(BaseModel):
    """Version 1 of runOnce's (optional) body. The channel's own settings would fill these; until
    channels are stored, the caller may pass them."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    v: int = Field(1, ge=1, le=1)
    user_id: str | None = Field(None, pattern=JOB_ID_PATTERN, max_length=128)
    prompt: str = Field("", max_length=3000)
    style: str = Field("", max_length=200)
    title: str = Field("", max_length=80)
    instrumental: StrictBool = Field(False, description="true or false (0 and 1 are not booleans)")


def _fail_at_intake(rt: Runtime, job: Job, code: str, message: str, *, retryable: bool) -> Job:
    """Mark a just-created job failed before it was queued; its record stays for tracing."""
    try:
        return rt.repo.transition(
            job.job_id,
            Transition(
                MUSIC_CLIPS.failed.name,
                actor="runOnce",
                message=f"{code}: {message}",
                expected_stage=job.stage,
                error=JobError(code=code, message=message, retryable=retryable),
            ),
        ).job
    except TransitionConflict:
        return rt.repo.get_job(job.job_id)


def run_once(
    rt: Runtime,
    channel_id: str,
    user_id: str,
    request: RunOnceRequest,
    idempotency_key: str | None = None,
    *,
    actor: str | None = None,
) -> tuple[Job, bool]:
    """Create ``user_id``'s run job (STAGE_10) and queue it; (job, created). ``actor`` is who asked
    (an admin may start a run for a user), as the job's first event records it.

    Raises CallbackUrlNotConfigured (400) or SunoCreditsExhausted (402) after creating the job and
    marking it failed. A repeated idempotency key returns the first run's job.
    """
    new = build_job(
        pipeline=MUSIC_CLIPS.name,
        account_id=user_id,
        scenario_id=SCENARIO_ID,
        source_id=channel_id,
        user_id=user_id,
        idempotency_key=f"music:{user_id}:{idempotency_key}" if idempotency_key else None,
        input={
            "channelId": channel_id,
            "prompt": request.prompt,
            "style": request.style,
            "title": request.title,
            "instrumental": request.instrumental,
        },
    )
    # The job names runOnce's trace, which the worker's spans continue over Pub/Sub.
    job, created = rt.repo.create_job(
        new, actor=actor or f"user:{user_id}", otel_trace_id=current_trace_id_hex()
    )
    if created:
        get_metrics().job_started(job.pipeline)
    with bind_job(job):
        if not created:
            if job.queued_message_id is None and not job.status.is_terminal:
                rt.repo.update_fields(job.job_id, queued_message_id=publish_job(rt, job))
            return job, False
        if suno_callback_url(rt.settings) is None:
            _fail_at_intake(rt, job, CALLBACK_URL_NOT_CONFIGURED, CALLBACK_URL_MESSAGE, retryable=False)
            log.error("runOnce refused: PUBLIC_BASE_URL is not set, Suno could not call back")
            raise CallbackUrlNotConfigured(CALLBACK_URL_MESSAGE, jobId=job.job_id)
        credits = rt.suno_credits.credits_left()  # within 0.5 s, or remembered (credits.py)
        if credits is not None and credits < rt.settings.suno_credits_per_generation:
            _fail_at_intake(rt, job, SunoCreditsExhausted.code, NO_CREDITS_MESSAGE, retryable=True)
            log.warning(
                "runOnce refused: Suno has %d credits, a generation needs %d",
                credits,
                rt.settings.suno_credits_per_generation,
            )
            raise SunoCreditsExhausted(NO_CREDITS_MESSAGE, credits=credits, jobId=job.job_id)
        rt.repo.update_fields(job.job_id, queued_message_id=publish_job(rt, job))
        log.info("Music Clips run queued")
    return job, True


# ---- Suno results (callback and poller share this) --------------------------------------------


class SunoOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"  # Suno is still at it (or sent an intermediate callback): a sign of life
    ALREADY_FINISHED = "already_finished"  # a duplicate or late result: nothing changed


def apply_suno_result(
    rt: Runtime,
    job: Job,
    result: SunoRecord | SunoCallback,
    *,
    actor: str,
    task_id: str | None = None,
) -> SunoOutcome:
    """Apply what Suno says about the job's task, once. Callback and poller both land here, and
    the state machine makes the first finished result win: a duplicate is a no-op, and nothing
    leaves a terminal stage (so a callback after a timeout or a cancel changes nothing).

    The result is for ``job`` as read by the caller: it applies only while the job is still in
    that attempt and waits on that task (or on none yet: a callback that outran the worker), and
    stores the task id with the outcome (``task_id``, default: the callback's, else the job's)."""
    if job.status.is_terminal:
        return SunoOutcome.ALREADY_FINISHED
    task_id = task_id or (result.task_id if isinstance(result, SunoCallback) else job.suno_task_id)
    if result.succeeded and result.audio_url:
        outcome = SunoOutcome.SUCCEEDED
        transition = Transition(
            MUSIC_CLIPS.succeeded.name,
            actor=actor,
            message=f"Suno task {task_id} done",
            fields={"result": {**job.result, "audioUrl": result.audio_url}, "suno_task_id": task_id},
        )
    elif result.finished:
        outcome = SunoOutcome.FAILED
        reason = result.error or (
            "no audio URL in a successful result" if result.succeeded else result.status
        )
        message = f"Suno generation failed: {reason}"
        transition = Transition(
            MUSIC_CLIPS.failed.name,
            actor=actor,
            message=message,
            error=JobError(code="SUNO_GENERATION_FAILED", message=message, retryable=True),
            fields={"suno_task_id": task_id},
        )
    else:
        try:
            rt.repo.heartbeat(job.job_id)
        except JobNotFound:
            return SunoOutcome.ALREADY_FINISHED
        return SunoOutcome.PENDING

    def still_waiting(current: Job) -> bool:
        return current.attempt == job.attempt and current.suno_task_id in (None, task_id)

    try:
        applied = rt.repo.transition(job.job_id, transition, only_if=still_waiting).applied
    except TransitionConflict:
        applied = False  # finished meanwhile (timed out, cancelled, or the other channel won)
    if not applied:
        log.info("Suno result for job %s ignored: the job finished or moved on", job.job_id)
        return SunoOutcome.ALREADY_FINISHED
    rt.repo.clear_suno_poll(job.job_id)
    log.info("Suno result applied by %s: %s", actor, outcome.value)
    return outcome


# ---- the job view ----------------------------------------------------------------------------


def iso(at: datetime) -> str:
    """``2024-12-26T21:00:00.000Z``: what the front end parses."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Accepted:
    job: Job
    created: bool

    def body(self) -> dict[str, Any]:
        return {
            "success": True,
            "ok": True,
            "jobId": self.job.job_id,
            "channelId": self.job.input.get("channelId", self.job.source_id),
            "stage": self.job.stage,
            "createdAt": iso(self.job.created_at),
            "message": ACCEPTED_MESSAGE,
            "duplicate": not self.created,
        }


def job_view(rt: Runtime, job: Job, *, request_id: str, now: datetime) -> dict[str, Any]:
    """GET /api/music-clips/jobs/{jobId} (seed 002). A finished job shows its stage's own text as
    progressText; what went wrong is in ``error`` (and ``errorCode``)."""
    stage = MUSIC_CLIPS.stage(job.stage)
    return {
        "success": True,
        "ok": True,
        "jobId": job.job_id,
        "channelId": job.input.get("channelId", job.source_id),
        "stage": job.stage,
        "progressText": stage.progress_text if job.status.is_terminal else job.progress_text,
        "sunoTaskId": job.suno_task_id,
        "audioUrl": job.result.get("audioUrl"),
        "error": job.error.message if job.error else None,
        "errorCode": job.error.code if job.error else None,
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
        "heartbeat": heartbeat_of(job, now).model_dump(by_alias=True),
        "traceId": job.trace_id,
        "requestId": request_id,
    }


def get_music_job(rt: Runtime, job_id: str) -> Job:
    """The Music Clips job ``job_id``; JobNotFound (404) if it is not one. Whether the caller may
    see it is services.auth's call (``visible``), which answers with the same 404."""
    job = rt.repo.get_job(job_id)
    if job.pipeline != MUSIC_CLIPS.name:
        raise JobNotFound(f"Job {job_id} not found")
    return job
