"""What reporting services send: a job to create, and reports about it. One versioned shape for the
HTTP API and the ingest-reports Pub/Sub topic, so a service can switch transport without change.

A report names its job (``job``) either by ``jobId`` or by its pipeline and the idempotency key it
was created with: a service that published the create (and so never heard the job id back), or that
buffered it while jobtrail was unreachable, can still report on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, RootModel, model_validator

from services.jobs.models import JOB_ID_PATTERN, CamelModel
from services.pipelines.declaration import NAME_PATTERN
from services.pipelines.registry import PIPELINES

INGEST_VERSION = 1
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"  # printable ASCII, no spaces
ERROR_CODE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


# Versions newer than INGEST_VERSION are refused (le=): senders add fields only with a new version.
class _Strict(CamelModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# Firestore nests maps at most 20 deep; the job document itself is one level.
MAX_FREE_FORM_DEPTH = 16


def _storable(value: Any, depth: int = 0) -> Any:
    """Free-form JSON (a job's input, a result) that Firestore can store as a map: keys non-empty
    and not reserved (``__name__``), text that is valid UTF-8, no list directly in a list, bounded
    nesting."""
    if depth > MAX_FREE_FORM_DEPTH:
        raise ValueError(f"nested deeper than {MAX_FREE_FORM_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid UTF-8 (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            if not key or (key.startswith("__") and key.endswith("__")):
                raise ValueError(f"map keys must be non-empty and not of the form __name__ ({key!r})")
            _storable(key, depth)
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                raise ValueError("a list may not hold a list directly (Firestore cannot store it)")
            _storable(item, depth + 1)
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(_storable)]


def _declared_pipelines(schema: dict[str, Any]) -> None:
    """The schema lists the pipelines declared at start; any other name is still answered 400."""
    schema["enum"] = sorted(PIPELINES)


class IngestJobCreate(_Strict):
    """A job of a declared pipeline, started by the service that runs it."""

    v: int = Field(INGEST_VERSION, ge=1, le=INGEST_VERSION)
    pipeline: str = Field(pattern=NAME_PATTERN, json_schema_extra=_declared_pipelines)
    # The service's own id for this unit of work: creating twice with it gives the same job.
    idempotency_key: str = Field(pattern=IDEMPOTENCY_KEY_PATTERN)
    account_id: str = Field(pattern=JOB_ID_PATTERN)
    scenario_id: str = Field(pattern=JOB_ID_PATTERN)
    source_id: str = Field(pattern=JOB_ID_PATTERN)
    user_id: str = Field(pattern=JOB_ID_PATTERN)
    input: FreeForm = Field(default_factory=dict)


class ReportType(StrEnum):
    STAGE = "stage"  # the job reached ``stage``
    HEARTBEAT = "heartbeat"  # still alive inside its stage
    PROGRESS = "progress"  # a progress text inside its stage (also a heartbeat)
    FAILED = "failed"  # it failed, with ``errorCode``
    SUCCEEDED = "succeeded"  # it reached its pipeline's last stage, with ``result``
    RETRY = "retry"  # the explicit retry of a failed or timed-out job


class JobById(_Strict):
    job_id: str = Field(pattern=JOB_ID_PATTERN)


class JobByKey(_Strict):
    """The job its service created with this idempotency key."""

    pipeline: str = Field(pattern=NAME_PATTERN, json_schema_extra=_declared_pipelines)
    idempotency_key: str = Field(pattern=IDEMPOTENCY_KEY_PATTERN)


class _Report(_Strict):
    v: int = Field(INGEST_VERSION, ge=1, le=INGEST_VERSION)
    job: JobById | JobByKey
    message: Annotated[str, AfterValidator(_storable)] = Field("", max_length=1000)
    # What the stage spent (compute_seconds, egress_bytes...): added to the job's cost.
    usage: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict, max_length=16)


class StageReport(_Report):
    """The job reached ``stage`` (a forward stage its service may write)."""

    type: Literal[ReportType.STAGE]
    stage: str = Field(pattern=NAME_PATTERN)


class HeartbeatReport(_Report):
    type: Literal[ReportType.HEARTBEAT]


class ProgressReport(_Report):
    """A progress text inside the current stage; also a heartbeat."""

    type: Literal[ReportType.PROGRESS]


class FailedReport(_Report):
    type: Literal[ReportType.FAILED]
    error_code: str = Field(pattern=ERROR_CODE_PATTERN)
    retryable: bool = False


class SucceededReport(_Report):
    """The job reached its pipeline's last stage."""

    type: Literal[ReportType.SUCCEEDED]
    result: FreeForm = Field(default_factory=dict)


class RetryReport(_Report):
    """The explicit retry of a failed or timed-out job: the only way out of a finished stage."""

    type: Literal[ReportType.RETRY]


AnyReport = Annotated[
    StageReport | HeartbeatReport | ProgressReport | FailedReport | SucceededReport | RetryReport,
    Field(discriminator="type"),
]


class Report(RootModel[AnyReport]):
    """One thing that happened to a job, by ``type``."""


class IngestMessage(_Strict):
    """The body of one ingest-reports Pub/Sub message: a create or a report, and who sends it.

    Pub/Sub carries no caller identity: only services granted publisher on the topic can send, and
    ``service`` is then scoped to its declared pipelines and stages like an authenticated caller.
    """

    v: int = Field(INGEST_VERSION, ge=1, le=INGEST_VERSION)
    service: str = Field(pattern=NAME_PATTERN)
    create: IngestJobCreate | None = None
    report: AnyReport | None = None

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
    kind: ReportType
