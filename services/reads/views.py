"""What reads answer: typed views of jobs, timelines, attempts, dead letters, audit and summary.

The API sends them as JSON (its OpenAPI document is generated from them) and the CLI prints them,
so both show the same fields. Job-shaped views are camelCase like the stored jobs and seed 002's
front end; execution records keep seed 004's snake_case field names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.jobs.models import (
    AuditRecord,
    CamelModel,
    Cost,
    Execution,
    ExecutionStatus,
    Heartbeat,
    Job,
    JobError,
    JobEvent,
    Liveness,
    QueueState,
    heartbeat_of,
    liveness_of,
)
from services.pipelines.spec import JobStatus
from services.settings import Settings
from services.telemetry import cloud_logging_url, cloud_trace_url


class Envelope(CamelModel):
    success: Literal[True] = True
    ok: Literal[True] = True


# ---- jobs ------------------------------------------------------------------------------------------
class JobLinks(CamelModel):
    trace: str | None = Field(None, description="Cloud Trace page of the job's trace (once known).")
    logs: str = Field(description='Cloud Logging filtered by labels.traceId="<traceId>".')


class JobView(CamelModel):
    job_id: str
    pipeline: str
    account_id: str
    scenario_id: str
    source_id: str
    user_id: str
    trace_id: str = Field(description="accountId-scenarioId-sourceId")
    status: JobStatus
    stage: str
    progress_text: str
    attempt: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    heartbeat_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat: Heartbeat
    liveness: Liveness = Field(
        description="waiting (its turn, or on Suno within schedule), running, retrying, stuck, finished"
    )
    stuck_at: datetime | None = Field(
        description="When the job reads as stuck if nothing happens first (null: nothing is overdue-able)."
    )
    retrying_since: datetime | None
    error: JobError | None
    cost: Cost
    result: dict[str, Any]
    input: dict[str, Any]
    suno_task_id: str | None
    otel_trace_id: str | None
    links: JobLinks

    @classmethod
    def of(cls, job: Job, settings: Settings, now: datetime) -> JobView:
        return cls(
            **job.model_dump(include=set(cls.model_fields) & set(Job.model_fields)),
            heartbeat=heartbeat_of(job, now),
            liveness=liveness_of(job, now),
            links=JobLinks(
                trace=cloud_trace_url(settings, job.otel_trace_id) if job.otel_trace_id else None,
                logs=cloud_logging_url(settings, job.trace_id),
            ),
        )


class JobDetail(Envelope, JobView):
    pass


class JobPage(Envelope):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last.")


class EventView(CamelModel):
    seq: int
    from_stage: str | None
    to_stage: str
    at: datetime
    duration_ms: int | None = Field(description="Time spent in fromStage (since the previous event).")
    actor: str
    attempt: int
    message: str

    @classmethod
    def of(cls, event: JobEvent) -> EventView:
        return cls(**event.model_dump(include=set(cls.model_fields)))


class StageSpan(CamelModel):
    stage: str
    attempt: int
    entered_at: datetime
    left_at: datetime | None = Field(description="null while the job is still in this stage.")
    duration_ms: int | None


class Timeline(Envelope):
    job_id: str
    events: list[EventView]
    stages: list[StageSpan]
    total_duration_ms: int = Field(description="From the first event to the last.")

    @classmethod
    def of(cls, job_id: str, events: list[JobEvent]) -> Timeline:
        stages = []
        for i, event in enumerate(events):
            left = events[i + 1].at if i + 1 < len(events) else None
            stages.append(
                StageSpan(
                    stage=event.to_stage,
                    attempt=event.attempt,
                    entered_at=event.at,
                    left_at=left,
                    duration_ms=int((left - event.at).total_seconds() * 1000) if left else None,
                )
            )
        total = int((events[-1].at - events[0].at).total_seconds() * 1000) if events else 0
        return cls(
            job_id=job_id, events=[EventView.of(e) for e in events], stages=stages, total_duration_ms=total
        )


# ---- executions (seed 004 names) -------------------------------------------------------------------
class ExecutionView(BaseModel):
    execution_id: str
    message_id: str
    job_id: str
    workflow_id: str = Field(description="The pipeline.")
    subscription: str
    attempts: int = Field(description="Pub/Sub delivery attempt of this record.")
    status: ExecutionStatus
    retryable: bool | None
    queued_to_dlq: bool
    last_error: str | None
    payload_snapshot: dict[str, Any]
    action_duration_ms: int | None
    started_at: datetime
    finished_at: datetime | None
    trace_id: str
    account_id: str | None
    scenario_id: str | None
    source_id: str | None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionView:
        return cls(
            **execution.model_dump(exclude={"workflow", "attempt", "expire_at"}),
            workflow_id=execution.workflow,
            attempts=execution.attempt,
        )


class JobExecutions(Envelope):
    job_id: str
    executions: list[ExecutionView]


class ExecutionLogPage(BaseModel):
    success: Literal[True] = True
    ok: Literal[True] = True
    items: list[ExecutionView]
    next_cursor: str | None


# ---- summary -----------------------------------------------------------------------------------------
class CostSummary(CamelModel):
    total: float = Field(description="Sum of cost.total over the matching jobs.")
    jobs: int
    account_id: str | None
    scenario_id: str | None
    user_id: str | None = Field(description="Set for non-admins: they see their own jobs' cost only.")
    created_from: datetime | None
    created_to: datetime | None


class Summary(Envelope):
    queued: int
    active: int
    finished_24h: int = Field(alias="finished24h")
    failed_24h: int = Field(alias="failed24h", description="Failed or timed out, of finished24h.")
    failure_rate_24h: float | None = Field(alias="failureRate24h", description="null with nothing finished.")
    mean_duration_ms_24h: float | None = Field(
        alias="meanDurationMs24h", description="Mean action_duration_ms of attempts finished in 24 h."
    )
    dlq_size: int = Field(description="Dead-lettered jobs not replayed yet.")
    stale_jobs: int = Field(
        description="Stuck jobs: something expected by now (a poll, the worker's step, a redelivery) "
        "did not happen. Jobs waiting their turn or on Suno within schedule do not count."
    )
    cost: CostSummary
    generated_at: datetime


# ---- queues, DLQ, audit --------------------------------------------------------------------------------
class QueueView(CamelModel):
    name: str
    topic: str
    paused: bool
    changed_by: str | None
    changed_at: datetime | None

    @classmethod
    def of(cls, state: QueueState, topic: str) -> QueueView:
        return cls(
            name=state.name,
            topic=topic,
            paused=state.paused,
            changed_by=state.changed_by,
            changed_at=state.changed_at,
        )


class QueueList(Envelope):
    queues: list[QueueView]


class QueueChanged(Envelope, QueueView):
    pass


class DeadLetterPage(Envelope):
    total: int = Field(description="Dead-lettered jobs matching the filter, all pages together.")
    jobs: list[JobView]
    next_cursor: str | None


class AuditView(CamelModel):
    audit_id: str
    actor: str
    action: str
    target: str
    params: dict[str, Any]
    result: str
    at: datetime

    @classmethod
    def of(cls, record: AuditRecord) -> AuditView:
        return cls(**record.model_dump())


class AuditPage(Envelope):
    audit: list[AuditView]
    next_cursor: str | None


# ---- the dead-letters page -------------------------------------------------------------------------
class DeadLetterGroup(CamelModel):
    value: str
    count: int


class DeadLetterGroups(CamelModel):
    """Counts per value of each facet, each over the dead letters matching the other facets."""

    pipeline: list[DeadLetterGroup]
    cause: list[DeadLetterGroup] = Field(description="Error code of the last failed attempt.")
    day: list[DeadLetterGroup] = Field(description="UTC day it was dead-lettered (YYYY-MM-DD).")


class DeadLetterBoard(Envelope):
    total: int = Field(description="Dead letters visible to the caller (all filters off).")
    matched: int = Field(description="Dead letters matching the filter.")
    truncated: bool = Field(
        description="More dead letters exist than one view reads: counts cover the oldest ones."
    )
    groups: DeadLetterGroups
    subscriptions: dict[str, list[str]] = Field(
        description="Pipeline -> the subscriptions a replay of its jobs is delivered to."
    )
    jobs: list[JobView] = Field(description="Matching dead letters, oldest first, up to limit.")


class DeadLetterPreview(Envelope):
    """What a replay of the selection would take, as of ``asOf``."""

    matched: int
    by_pipeline: dict[str, int]
    by_subscription: dict[str, int]
    as_of: datetime = Field(description="Pass as asOf to the replay: jobs changed after it are left alone.")
