"""What a pipeline does: steps, each a handler that moves the job from one stage to a later one.

The worker engine runs a job's remaining steps in order. A step enters ``start`` before its handler
runs and ``done`` after it returns; a handler that passes intermediate stages calls
``ctx.advance``. Handlers must be idempotent: after a crash the step runs again from ``start``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.jobs.models import Job

if TYPE_CHECKING:
    from services.runtime import Runtime


class NonRetryableError(Exception):
    """A business-rule or bad-input failure: the job fails at once, Pub/Sub does not retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RetryLater(Exception):
    """Not a failure: the step cannot go on yet (an outside answer is awaited); retried by redelivery."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class StepResult:
    # Job fields to set with the ``done`` stage (snake_case model names: result, suno_task_id...).
    fields: dict[str, Any] = field(default_factory=dict)
    # What the step spent, by kind (compute_seconds, suno_credits, egress_bytes): see telemetry.cost.
    usage: dict[str, float] = field(default_factory=dict)
    # What the step left behind, by name (downloaded, prepared, permalink): the attempt's execution
    # record lists them, so an operator finds the files of a failed or slow attempt.
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class StepContext:
    rt: Runtime
    job: Job
    actor: str
    advance: Callable[..., Job]  # advance(stage, **fields): an intermediate stage, in its own commit


Handler = Callable[[StepContext], StepResult]


@dataclass(frozen=True)
class Step:
    name: str
    start: str
    done: str
    handler: Handler
