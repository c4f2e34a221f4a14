"""Pipelines declared as data: one YAML file each in services/pipelines/declared/.

A declaration names the stages (text, time limit), the terminal stages, and which reporting
services may write which stages. It is validated when loaded, so a bad file stops the process at
start with a message naming the file and the problem, never halfway through a job.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.pipelines.spec import PipelineSpec, Stage

DECLARED_DIR = Path(__file__).resolve().parent / "declared"
# Names travel in URLs, Firestore fields and metric labels.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
# Job fields a retry may clear (the attempt-bound ones); anything else would erase history.
ATTEMPT_FIELDS = frozenset({"suno_task_id", "suno_requested_at"})


class DeclarationError(ValueError):
    """A pipeline file that cannot be used; the message names the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageDecl(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    text: str = Field(min_length=1, max_length=300)
    # How long a job may sit in this stage without a report or heartbeat. Terminal: none.
    timeout_seconds: int = Field(0, ge=0, le=7 * 24 * 3600)


class TerminalDecl(_Strict):
    failed: StageDecl
    timed_out: StageDecl
    cancelled: StageDecl


class ReporterDecl(_Strict):
    stages: list[str] = Field(min_length=1)


class PipelineDecl(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    # Set for pipelines whose steps run in jobtrail's worker: the work topic (infra/topology.yaml).
    topic: str | None = None
    stages: list[StageDecl] = Field(min_length=2)
    terminal: TerminalDecl
    max_duration_seconds: int | None = Field(None, gt=0)
    retry_from: str | None = None
    attempt_fields: list[str] = Field(default_factory=list)
    # The error a timed-out job shows its user where the front end expects one text (seed 002).
    timeout_error_text: str | None = Field(None, min_length=1)
    reporters: dict[str, ReporterDecl] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineDecl:
        terminal = (self.terminal.failed, self.terminal.timed_out, self.terminal.cancelled)
        names = [s.name for s in (*self.stages, *terminal)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"stage names must be unique: {duplicates}")
        for stage in self.stages[:-1]:
            if stage.timeout_seconds <= 0:
                raise ValueError(
                    f"stage {stage.name} needs a timeout_seconds above 0 (only the last may omit it)"
                )
        forward = {s.name for s in self.stages}
        if self.retry_from is not None and self.retry_from not in forward:
            raise ValueError(f"retry_from names no forward stage: {self.retry_from}")
        unknown_fields = set(self.attempt_fields) - ATTEMPT_FIELDS
        if unknown_fields:
            raise ValueError(
                f"attempt_fields may name only {sorted(ATTEMPT_FIELDS)}: {sorted(unknown_fields)}"
            )
        for service, reporter in self.reporters.items():
            if not _NAME.match(service):
                raise ValueError(f"reporter name {service!r} must match {NAME_PATTERN}")
            # Jobs start in the first stage (created), and only jobtrail times out or cancels them.
            writable = forward - {self.stages[0].name}
            bad = sorted(set(reporter.stages) - writable)
            if bad:
                raise ValueError(
                    f"reporter {service} may write only forward stages after the first "
                    f"({sorted(writable)}), not {bad}"
                )
        return self

    def to_spec(self) -> PipelineSpec:
        def stage(decl: StageDecl) -> Stage:
            return Stage(decl.name, decl.text, timeout_seconds=decl.timeout_seconds)

        return PipelineSpec(
            name=self.name,
            stages=tuple(stage(s) for s in self.stages),
            failed=stage(self.terminal.failed),
            timed_out=stage(self.terminal.timed_out),
            cancelled=stage(self.terminal.cancelled),
            topic=self.topic,
            max_duration_seconds=self.max_duration_seconds,
            retry_from=self.retry_from,
            attempt_fields=tuple(self.attempt_fields),
            timeout_error_text=self.timeout_error_text,
            reporters={name: frozenset(r.stages) for name, r in self.reporters.items()},
        )


def parse_declaration(data: Any, source: str = "<declaration>") -> PipelineSpec:
    try:
        return PipelineDecl.model_validate(data).to_spec()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise DeclarationError(f"{source}: {problems}") from None


def load_declarations(directory: Path = DECLARED_DIR) -> dict[str, PipelineSpec]:
    """Every ``*.yaml`` of ``directory``, validated; the file's stem must be the pipeline's name."""
    specs: dict[str, PipelineSpec] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DeclarationError(f"{path.name}: not YAML ({exc})") from None
        spec = parse_declaration(data, path.name)
        if spec.name != path.stem:
            raise DeclarationError(f"{path.name}: declares {spec.name!r}; name the file {spec.name}.yaml")
        specs[spec.name] = spec
    if not specs:
        raise DeclarationError(f"no pipeline declarations in {directory}")
    return specs
