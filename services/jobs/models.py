"""Layered models of what jobtrail stores.

Jobs and their events are stored camelCase (the shape the existing front end reads, seed 002);
executions keep the snake_case field names of the execution-log API (seed 004). The repository
fills every server-owned field (ids, timestamps, status); callers only ever build the ``*Create``
models.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from services.pipelines.spec import JobStatus

# Ids travel in URLs, log labels and Pub/Sub attributes: keep them printable and bounded. The same
# shape for a job's id parts (account, scenario, source) and for the job ids the API and the
# callbacks accept; anything else is answered like a missing job without reaching Firestore.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
_ID_PART = re.compile(JOB_ID_PATTERN)


def is_job_id(value: str) -> bool:
    return _ID_PART.match(value) is not None


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="python")


def make_trace_id(account_id: str, scenario_id: str, source_id: str) -> str:
    """traceId = accountId-scenarioId-sourceId (seed 000 §5).

    Parts may contain '-', so the joined id is not parsed back: jobs also store the three parts.
    """
    for label, part in (("accountId", account_id), ("scenarioId", scenario_id), ("sourceId", source_id)):
        if not _ID_PART.match(part or ""):
            raise ValueError(f"{label} must be 1-128 characters of letters, digits or _.:@- ({part!r})")
    return f"{account_id}-{scenario_id}-{source_id}"


class JobError(CamelModel):
    code: str
    message: str
    retryable: bool = False
    stage: str | None = None
    # The error code behind this one, when it wraps another: a dead letter's last failed attempt
    # (VIDEO_SOURCE_ERROR...), which the dead-letters page groups by.
    cause: str | None = None


class Cost(CamelModel):
    """What a job spent, by kind (compute, suno_credits, egress...), in the account's currency."""

    total: float = 0.0
    items: dict[str, float] = Field(default_factory=dict)


class JobCreate(CamelModel):
    pipeline: str
    account_id: str
    scenario_id: str
    source_id: str
    user_id: str
    idempotency_key: str | None = None
    # The job's parameters (video URL, channelId...): enough to run, retry or replay it.
    input: dict[str, Any] = Field(default_factory=dict)

    @field_validator("account_id", "scenario_id", "source_id", "user_id")
    @classmethod
    def _printable_id(cls, value: str, info: Any) -> str:
        if not _ID_PART.match(value or ""):
            raise ValueError(f"{info.field_name} must be 1-128 characters of letters, digits or _.:@-")
        return value


def build_job(**fields: Any) -> JobCreate:
    """A JobCreate from untrusted fields; bad ids become a 400, not a crash."""
    from pydantic import ValidationError

    from services.errors import InvalidInput

    try:
        return JobCreate(**fields)
    except ValidationError as exc:
        raise InvalidInput(
            "invalid job fields",
            problems=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from exc


class Job(JobCreate):
    job_id: str
    trace_id: str
    status: JobStatus
    stage: str
    progress_text: str
    attempt: int = 1
    created_at: datetime
    updated_at: datetime
    heartbeat_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: JobError | None = None
    suno_task_id: str | None = None
    # When this attempt asked Suno for a generation (before the answer, which can be lost).
    suno_requested_at: datetime | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    cost: Cost = Field(default_factory=Cost)
    otel_trace_id: str | None = None
    # The Pub/Sub message that queued the job's start; unset means it still has to be published.
    queued_message_id: str | None = None
    cancel_requested: bool = False
    # Where a retry resumes: the last forward stage reached before the job failed or timed out.
    resume_stage: str | None = None
    # The attempt's hard limit (pipelines with max_duration_seconds); heartbeats never pass it.
    deadline_at: datetime | None = None
    # When the sweeper should look at this job; None once it is finished (so no query finds it).
    stale_at: datetime | None = None
    # When the job is stuck if nothing happens first: the next expected sign of life (a poll, the
    # worker finishing its step, a redelivery) plus grace. None while it waits its turn (queued) or
    # is finished, so the header counts stuck jobs with one range query.
    stuck_at: datetime | None = None
    # Set while the worker's last attempt failed and Pub/Sub is to redeliver; any move clears it.
    retrying_since: datetime | None = None
    # The poller's schedule while the job waits on Suno (repository: schedule_suno_poll).
    next_poll_at: datetime | None = None
    expire_at: datetime | None = None
    event_count: int = 0
    last_event_at: datetime | None = None


class JobEvent(CamelModel):
    event_id: str
    job_id: str
    seq: int
    from_stage: str | None
    to_stage: str
    at: datetime
    duration_ms: int | None = Field(None, description="Time since the previous event of this job.")
    actor: str
    attempt: int
    message: str = ""
    expire_at: datetime | None = None


class ExecutionStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAIL = "fail"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class Execution(BaseModel):
    """One attempt at one message (seed 000 §14, seed 004)."""

    model_config = ConfigDict(extra="ignore")

    execution_id: str
    message_id: str
    job_id: str
    workflow: str
    subscription: str
    attempt: int
    status: ExecutionStatus = ExecutionStatus.IN_PROGRESS
    started_at: datetime
    finished_at: datetime | None = None
    action_duration_ms: int | None = None
    last_error: str | None = None
    retryable: bool | None = None
    queued_to_dlq: bool = False
    payload_snapshot: dict[str, Any] = Field(default_factory=dict)
    trace_id: str
    account_id: str | None = None
    scenario_id: str | None = None
    source_id: str | None = None
    user_id: str | None = None
    # The delivery's request id (seed 000 §14's reqId): every log line of the attempt carries it
    # as the requestId label.
    request_id: str | None = None
    artifact_paths: dict[str, str] = Field(default_factory=dict)
    expire_at: datetime | None = None

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class QueueState(CamelModel):
    name: str
    paused: bool = False
    changed_by: str | None = None
    changed_at: datetime | None = None
    # The subscription's push config while paused (detached, so Pub/Sub holds the messages
    # instead of counting nacked deliveries toward dead-lettering); resume puts it back.
    push_config: dict[str, Any] | None = None


class AuditRecord(CamelModel):
    audit_id: str
    actor: str
    action: str
    target: str
    params: dict[str, Any] = Field(default_factory=dict)
    result: str
    at: datetime


class Heartbeat(CamelModel):
    seconds_since_update: int
    is_stale: bool


class Liveness(StrEnum):
    """What an active job is doing, told apart so that only a stuck job alarms anyone."""

    WAITING = "waiting"  # its turn in a queue, or an outside party (Suno) within its schedule
    RUNNING = "running"  # the worker is at it, within the step's expected time
    RETRYING = "retrying"  # an attempt failed; Pub/Sub redelivers after its backoff
    STUCK = "stuck"  # something expected by now did not happen
    FINISHED = "finished"


def liveness_of(job: Job, now: datetime) -> Liveness:
    if job.status.is_terminal:
        return Liveness.FINISHED
    if job.stuck_at is not None and job.stuck_at < now:
        return Liveness.STUCK
    if job.retrying_since is not None:
        return Liveness.RETRYING
    if job.status is JobStatus.QUEUED or job.next_poll_at is not None:
        return Liveness.WAITING
    return Liveness.RUNNING


def heartbeat_of(job: Job, now: datetime) -> Heartbeat:
    """Seed 002's liveness view: how long since the job last moved, and whether it is stale, which
    means stuck (``liveness_of``): a job waiting its turn or on Suno within its schedule is not."""
    age = max(0, int((now - job.heartbeat_at).total_seconds()))
    return Heartbeat(seconds_since_update=age, is_stale=liveness_of(job, now) is Liveness.STUCK)
