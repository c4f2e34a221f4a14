"""Name -> pipeline. The one place that knows which pipelines exist."""

from __future__ import annotations

from services.errors import InvalidInput
from services.pipelines.music_clips import MUSIC_CLIPS, MUSIC_CLIPS_STEPS
from services.pipelines.spec import PipelineSpec
from services.pipelines.steps import Step
from services.pipelines.video import VIDEO, VIDEO_STEPS

PIPELINES: dict[str, PipelineSpec] = {p.name: p for p in (VIDEO, MUSIC_CLIPS)}
STEPS: dict[str, tuple[Step, ...]] = {VIDEO.name: VIDEO_STEPS, MUSIC_CLIPS.name: MUSIC_CLIPS_STEPS}


def get_pipeline(name: str) -> PipelineSpec:
    try:
        return PIPELINES[name]
    except KeyError:
        raise InvalidInput(f"unknown pipeline {name!r}", pipelines=sorted(PIPELINES)) from None


def register_pipeline(spec: PipelineSpec, steps: tuple[Step, ...]) -> None:
    """Add a pipeline (a plug-in module, or a benchmark's no-op pipeline) at start-up."""
    PIPELINES[spec.name] = spec
    STEPS[spec.name] = steps


def get_steps(name: str) -> tuple[Step, ...]:
    get_pipeline(name)
    return STEPS[name]
