"""A pipeline as the state machine sees it: its ordered stages and its terminal stages.

Built from a declaration (services/pipelines/declared/*.yaml, see declaration.py); the state
machine reads only this and knows nothing of videos, music or who runs the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class JobStatus(StrEnum):
    """The coarse status every pipeline shares; the fine-grained position is the stage."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED}
)
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


@dataclass(frozen=True)
class Stage:
    name: str
    progress_text: str
    # How long a job may sit in this stage without a heartbeat before the sweeper times it out.
    timeout_seconds: int


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    # The forward path, first (initial) to last (success). A job only ever moves forward along it.
    stages: tuple[Stage, ...]
    failed: Stage
    timed_out: Stage
    cancelled: Stage
    # The Pub/Sub topic (name from infra/topology.yaml) that carries this pipeline's work; None for
    # a pipeline that runs elsewhere and reports its stages through the ingest API.
    topic: str | None = None
    # A hard limit on the whole job, whatever its heartbeats say (Music Clips: 10 minutes).
    max_duration_seconds: int | None = None
    # Where a retry starts. None: where the job stopped (its finished stages are kept). A pipeline
    # whose later stages only wait on an outside party (Suno) must start over instead.
    retry_from: str | None = None
    # Job fields that belong to one attempt (model names), cleared by a retry: a later result for
    # the old attempt (a Suno callback for its task) must not be taken for the new one's.
    attempt_fields: tuple[str, ...] = ()
    # Reporting service -> the stages it may move this pipeline's jobs to (services/ingest).
    reporters: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)
    # The error a timed-out job shows its user, when the front end expects one text (seed 002);
    # None: the sweeper's own explanation.
    timeout_error_text: str | None = None
    _rank: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rank", {s.name: i for i, s in enumerate(self.stages)})

    @property
    def initial(self) -> Stage:
        return self.stages[0]

    @property
    def succeeded(self) -> Stage:
        return self.stages[-1]

    @property
    def terminal_stages(self) -> dict[str, JobStatus]:
        return {
            self.succeeded.name: JobStatus.SUCCEEDED,
            self.failed.name: JobStatus.FAILED,
            self.timed_out.name: JobStatus.TIMED_OUT,
            self.cancelled.name: JobStatus.CANCELLED,
        }

    def stage(self, name: str) -> Stage:
        for s in (*self.stages, self.failed, self.timed_out, self.cancelled):
            if s.name == name:
                return s
        raise KeyError(name)

    def has_stage(self, name: str) -> bool:
        return name in self._rank or name in self.terminal_stages

    def rank(self, name: str) -> int:
        """Position on the forward path; terminal stages rank above every stage."""
        if name in self._rank:
            return self._rank[name]
        return len(self.stages)

    def status_of(self, stage: str) -> JobStatus:
        if stage in self.terminal_stages:
            return self.terminal_stages[stage]
        return JobStatus.QUEUED if stage == self.initial.name else JobStatus.RUNNING

    def next_stage(self, stage: str) -> Stage | None:
        i = self._rank.get(stage)
        if i is None or i + 1 >= len(self.stages):
            return None
        return self.stages[i + 1]
