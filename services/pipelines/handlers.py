"""Pipeline -> the steps jobtrail's worker runs for it. Only the worker and the control plane read
this; pipelines that run elsewhere (they report through services/ingest) have no steps here."""

from __future__ import annotations

from services.pipelines.music_clips import MUSIC_CLIPS_STEPS
from services.pipelines.registry import get_pipeline, register_spec
from services.pipelines.spec import PipelineSpec
from services.pipelines.steps import Step
from services.pipelines.video import VIDEO_STEPS

STEPS: dict[str, tuple[Step, ...]] = {"video": VIDEO_STEPS, "music_clips": MUSIC_CLIPS_STEPS}


def get_steps(name: str) -> tuple[Step, ...]:
    """The pipeline's worker steps; none for a reported pipeline (its stages are written by its
    own service)."""
    get_pipeline(name)
    return STEPS.get(name, ())


def register_pipeline(spec: PipelineSpec, steps: tuple[Step, ...]) -> None:
    """Add a pipeline and its steps at start-up (a benchmark's no-op pipeline)."""
    register_spec(spec)
    STEPS[spec.name] = steps
