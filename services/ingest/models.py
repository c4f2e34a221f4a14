"""What reporting services send: a job to create, and reports about it. One versioned shape for the
HTTP API and the ingest-reports Pub/Sub topic, so a service can switch transport without change.

A report names its job either by ``jobId`` or by its pipeline and the idempotency key it was
created with: a service that published the create (and so never heard the job id back), or that
buffered it while jobtrail was unreachable, can still report on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from services.jobs.models import JOB_ID_PATTERN, CamelModel
from services.pipelines.declaration import NAME_PATTERN

INGEST_VERSION = 1
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"  # printable ASCII, no spaces
ERROR_CODE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


# Versions newer than INGEST_VERSION are refused (le=): senders add fields only with a new version.
class _Strict(CamelModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class IngestJobCreate(_Strict):
    """A job of a declared pipeline, started by the service that runs it."""

    v: int = Field(INGEST_VERSION, ge=1, le=INGEST_VERSION)
    pipeline: str = Field(pattern=NAME_PATTERN)
    # The service's own id for this unit of work: creating twice with it gives the same job.
    idempotency_key: str = Field(pattern=IDEMPOTENCY_KEY_PATTERN)
    account_id: str = Field(pattern=JOB_ID_PATTERN)
    scenario_id: str = Field(pattern=JOB_ID_PATTERN)
    source_id: str = Field(pattern=JOB_ID_PATTERN)
    user_id: str = Field(pattern=JOB_ID_PATTERN)
    input: dict[str, Any] = Field(default_factory=dict)


class ReportType(StrEnum):
    STAGE = "stage"  # the job reached ``stage``
    HEARTBEAT = "heartbeat"  # still alive inside its stage
    PROGRESS = "progress"  # a progress text inside its stage (also a heartbeat)
    FAILED = "failed"  # it failed, with ``errorCode``
    SUCCEEDED = "succeeded"  # it reached its pipeline's last stage, with ``result``
    RETRY = "retry"  # the explicit retry of a failed or timed-out job


class Report(_Strict):
    """One thing that happened to a job."""

    v: int = Field(INGEST_VERSION, ge=1, le=INGEST_VERSION)
    type: ReportType
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN)
    pipeline: str | None = Field(None, pattern=NAME_PATTERN)
    idempotency_key: str | None = Field(None, pattern=IDEMPOTENCY_KEY_PATTERN)
    stage: str | None = Field(None, max_length=64)
    message: str = Field("", max_length=1000)
    error_code: str | None = Field(None, pattern=ERROR_CODE_PATTERN)
    retryable: bool = False
    result: dict[str, Any] = Field(default_factory=dict)
    # What the stage spent (compute_seconds, egress_bytes...): added to the job's cost.
    usage: dict[str, float] = Field(default_factory=dict, max_length=16)

    @model_validator(mode="after")
    def _complete(self) -> Report:
        if self.job_id is None and (self.pipeline is None or self.idempotency_key is None):
            raise ValueError("name the job: jobId, or pipeline and idempotencyKey")
        if self.type is ReportType.STAGE and not self.stage:
            raise ValueError("a stage report needs stage")
        if self.type is ReportType.FAILED and not self.error_code:
            raise ValueError("a failed report needs errorCode")
        if any(value < 0 for value in self.usage.values()):
            raise ValueError("usage quantities cannot be negative")
        return self


class IngestMessage(_Strict):
    """The body of one ingest-reports Pub/Sub message: a create or a report, and who sends it.

    Pub/Sub carries no caller identity: only services granted publisher on the topic can send, and
    ``service`` is then scoped to its declared pipelines and stages like an authenticated caller.
    """

    v: int = Field(INGEST_VERSION, ge=1, le=INGEST_VERSION)
    service: str = Field(pattern=NAME_PATTERN)
    create: IngestJobCreate | None = None
    report: Report | None = None

    @model_validator(mode="after")
    def _one_of(self) -> IngestMessage:
        if (self.create is None) == (self.report is None):
            raise ValueError("a message carries exactly one of create or report")
        return self


class IngestedJob(CamelModel):
    """The job as the reporting service needs it back."""

    job_id: str
    trace_id: str
    pipeline: str
    stage: str
    status: str
    created: bool = Field(description="False: the idempotency key named an existing job.")


class ReportOutcome(CamelModel):
    """What a report did."""

    job_id: str
    stage: str
    status: str
    applied: bool = Field(description="False: a duplicate, nothing was written.")
    kind: Literal["stage", "heartbeat", "progress", "failed", "succeeded", "retry"]
