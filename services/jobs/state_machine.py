"""The legal moves of a job, as pure functions: no I/O, so every rule is unit-tested directly.

The repository runs these inside a Firestore transaction: it reads the job, asks ``plan_*`` what
to write, and commits the job and its event together.

Rules (ARCHITECTURE.md, "Transitions are transactional and monotonic"):
- a job only moves forward along its pipeline's stages, or into a terminal stage;
- moving to the stage it is already in is a duplicate: nothing is written;
- nothing leaves a terminal stage except an explicit retry, which reopens failed or timed-out jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.errors import IllegalTransition, TransitionConflict
from services.jobs.models import Job, JobError, JobEvent
from services.pipelines.spec import JobStatus, PipelineSpec

RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})


@dataclass(frozen=True)
class Transition:
    to_stage: str
    actor: str
    message: str = ""
    # Precondition: the stage the caller believes the job is in. A mismatch is a conflict, unless
    # the job already stands at ``to_stage`` (then it is a duplicate, and a no-op).
    expected_stage: str | None = None
    error: JobError | None = None
    # Other job fields to set in the same commit (snake_case model names: suno_task_id, result...).
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What one commit writes: the job's changed fields and the event that explains them."""

    patch: dict[str, Any]
    event: JobEvent


@dataclass(frozen=True)
class Expectations:
    """How long each wait may last before the job reads as stuck (``Job.stuck_at``)."""

    # The worker's longest step (handler timeout) plus grace.
    worker_seconds: float = 110.0
    # How late an expected event (a scheduled poll, a redelivery) may be: covers the one-minute
    # period of the scheduler that runs the poller.
    grace_seconds: float = 60.0

    def stuck_at(
        self, spec: PipelineSpec, stage: str, now: datetime, next_poll_at: datetime | None
    ) -> datetime | None:
        status = spec.status_of(stage)
        if status.is_terminal or status is JobStatus.QUEUED:
            return None  # finished, or waiting its turn in the queue: nothing is overdue
        if next_poll_at is not None:
            return next_poll_at + timedelta(seconds=self.grace_seconds)
        return now + timedelta(seconds=self.worker_seconds)

    def retry_stuck_at(self, now: datetime, redelivery_within_seconds: float) -> datetime:
        """A failed attempt is stuck if no redelivery has moved it within Pub/Sub's backoff."""
        return now + timedelta(seconds=redelivery_within_seconds + self.worker_seconds)


DEFAULT_EXPECTATIONS = Expectations()


def stale_at_for(
    spec: PipelineSpec, stage: str, now: datetime, deadline_at: datetime | None
) -> datetime | None:
    """When the sweeper should time the job out if nothing moves it: the stage's limit, capped by
    the attempt's deadline; None for finished jobs."""
    if spec.status_of(stage).is_terminal:
        return None
    at = now + timedelta(seconds=spec.stage(stage).timeout_seconds)
    return min(at, deadline_at) if deadline_at else at


def _event(
    job: Job, to_stage: str, now: datetime, actor: str, message: str, attempt: int, retention: timedelta
) -> JobEvent:
    seq = job.event_count + 1
    since = job.last_event_at or job.created_at
    return JobEvent(
        event_id=f"{seq:05d}",
        job_id=job.job_id,
        seq=seq,
        from_stage=job.stage,
        to_stage=to_stage,
        at=now,
        duration_ms=max(0, int((now - since).total_seconds() * 1000)),
        actor=actor,
        attempt=attempt,
        message=message,
        expire_at=now + retention,
    )


def plan_transition(
    spec: PipelineSpec,
    job: Job,
    t: Transition,
    now: datetime,
    retention: timedelta,
    expect: Expectations = DEFAULT_EXPECTATIONS,
) -> Plan | None:
    """The commit that moves ``job`` to ``t.to_stage``; None for a duplicate. Raises on an illegal move."""
    if not spec.has_stage(t.to_stage):
        raise IllegalTransition(f"{spec.name} has no stage {t.to_stage!r}", jobId=job.job_id)
    if job.stage == t.to_stage:
        return None
    if t.expected_stage is not None and job.stage != t.expected_stage:
        raise TransitionConflict(
            f"job {job.job_id} is in {job.stage}, not {t.expected_stage}",
            jobId=job.job_id,
            stage=job.stage,
        )
    if job.status.is_terminal:
        raise IllegalTransition(
            f"job {job.job_id} is finished ({job.stage}); only a retry reopens it",
            jobId=job.job_id,
            stage=job.stage,
        )
    if spec.rank(t.to_stage) < spec.rank(job.stage):
        raise IllegalTransition(
            f"job {job.job_id} cannot move back from {job.stage} to {t.to_stage}",
            jobId=job.job_id,
            stage=job.stage,
        )

    status = spec.status_of(t.to_stage)
    patch: dict[str, Any] = {
        **t.fields,
        "stage": t.to_stage,
        "status": status,
        "progress_text": t.message
        if status in (JobStatus.FAILED, JobStatus.TIMED_OUT) and t.message
        else spec.stage(t.to_stage).progress_text,
        "updated_at": now,
        "heartbeat_at": now,
        "stale_at": stale_at_for(spec, t.to_stage, now, job.deadline_at),
        "stuck_at": expect.stuck_at(spec, t.to_stage, now, job.next_poll_at),
        "retrying_since": None,
        "event_count": job.event_count + 1,
        "last_event_at": now,
    }
    if job.started_at is None and status is not JobStatus.QUEUED:
        patch["started_at"] = now
    if status.is_terminal:
        patch["finished_at"] = now
        patch["expire_at"] = now + retention
        patch["cancel_requested"] = False
        if status in RETRYABLE_STATUSES:
            patch["resume_stage"] = job.stage
    if t.error is not None:
        patch["error"] = t.error.model_copy(update={"stage": t.error.stage or job.stage})
    event = _event(job, t.to_stage, now, t.actor, t.message, job.attempt, retention)
    return Plan(patch=patch, event=event)


def plan_retry(spec: PipelineSpec, job: Job, now: datetime, actor: str, retention: timedelta) -> Plan:
    """Reopen a failed or timed-out job as a new attempt, resuming where it stopped."""
    if job.status not in RETRYABLE_STATUSES:
        raise IllegalTransition(
            f"job {job.job_id} is {job.status}; only failed or timed-out jobs can be retried",
            jobId=job.job_id,
            stage=job.stage,
        )
    stage = spec.retry_from or job.resume_stage or spec.initial.name
    deadline = now + timedelta(seconds=spec.max_duration_seconds) if spec.max_duration_seconds else None
    attempt = job.attempt + 1
    patch: dict[str, Any] = {
        "stage": stage,
        "status": spec.status_of(stage),
        "progress_text": spec.stage(stage).progress_text,
        "attempt": attempt,
        "error": None,
        "finished_at": None,
        "expire_at": None,
        "cancel_requested": False,
        "updated_at": now,
        "heartbeat_at": now,
        "deadline_at": deadline,
        "stale_at": stale_at_for(spec, stage, now, deadline),
        # Requeued: it waits its turn, and reads as retrying until the worker takes it.
        "stuck_at": None,
        "retrying_since": now,
        "next_poll_at": None,  # the earlier attempt's schedule: its task is not this attempt's
        "event_count": job.event_count + 1,
        "last_event_at": now,
        **dict.fromkeys(spec.attempt_fields),
    }
    event = _event(job, stage, now, actor, f"retry: attempt {attempt}", attempt, retention)
    return Plan(patch=patch, event=event)


def plan_heartbeat(
    spec: PipelineSpec,
    job: Job,
    now: datetime,
    progress_text: str | None = None,
    expect: Expectations = DEFAULT_EXPECTATIONS,
) -> dict[str, Any] | None:
    """A sign of life inside a long stage, optionally with a new progress text: pushes the stale
    and stuck deadlines, writes no event."""
    if job.status.is_terminal:
        return None
    patch: dict[str, Any] = {
        "heartbeat_at": now,
        "updated_at": now,
        "stale_at": stale_at_for(spec, job.stage, now, job.deadline_at),
        "stuck_at": expect.stuck_at(spec, job.stage, now, job.next_poll_at),
    }
    if progress_text:
        patch["progress_text"] = progress_text
    return patch
