"""Name -> pipeline. The one place that knows which pipelines exist.

Every declaration in services/pipelines/declared/ is loaded and validated when this module is first
imported (a bad file stops the process at start). Specs only: the job store, the sweeper and the
ingest read this module and never import a pipeline's handlers (services/pipelines/handlers.py).
"""

from __future__ import annotations

from services.errors import InvalidInput
from services.pipelines.declaration import load_declarations
from services.pipelines.spec import PipelineSpec

PIPELINES: dict[str, PipelineSpec] = load_declarations()


def get_pipeline(name: str) -> PipelineSpec:
    try:
        return PIPELINES[name]
    except KeyError:
        raise InvalidInput(f"unknown pipeline {name!r}", pipelines=sorted(PIPELINES)) from None


def register_spec(spec: PipelineSpec) -> None:
    """Add a pipeline at start-up (a benchmark's no-op pipeline); declared ones come from files."""
    PIPELINES[spec.name] = spec
