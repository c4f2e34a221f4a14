"""Name -> pipeline. The one place that knows which pipelines exist."""

from __future__ import annotations

from services.errors import InvalidInput
from services.pipelines.music_clips import MUSIC_CLIPS
from services.pipelines.spec import PipelineSpec
from services.pipelines.video import VIDEO

PIPELINES: dict[str, PipelineSpec] = {p.name: p for p in (VIDEO, MUSIC_CLIPS)}


def get_pipeline(name: str) -> PipelineSpec:
    try:
        return PIPELINES[name]
    except KeyError:
        raise InvalidInput(f"unknown pipeline {name!r}", pipelines=sorted(PIPELINES)) from None
