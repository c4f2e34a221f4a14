"""What each pipeline's job input holds: the models an operator's edit of a dead letter's input is
validated against before it is saved and replayed.

The entry points that create jobs build exactly these shapes (the video webhook, Music Clips'
runOnce; tests/unit/test_pipeline_inputs.py holds them to it). A pipeline that runs elsewhere
(reported through the ingest API) declares no model here: its input is the free-form map its own
service sent, checked only for what Firestore can store.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StrictBool, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from services.errors import InvalidInput
from services.ingest.models import FreeForm
from services.jobs.models import JOB_ID_PATTERN


class _Input(BaseModel):
    # Unknown fields are refused: an operator's typo must not be saved as a new, ignored field.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class VideoInput(_Input):
    """The video pipeline (seed 000): where to download the video from, and its caption."""

    video_url: HttpUrl
    caption: str = Field("", max_length=2200)


class MusicClipsInput(_Input):
    """Music Clips (seed 002): the channel and what Suno is asked to generate."""

    channel_id: str = Field(pattern=JOB_ID_PATTERN)
    prompt: str = Field("", max_length=3000)
    style: str = Field("", max_length=200)
    title: str = Field("", max_length=80)
    instrumental: StrictBool = False


INPUT_MODELS: dict[str, type[_Input]] = {"video": VideoInput, "music_clips": MusicClipsInput}


def input_model(pipeline: str) -> type[_Input] | None:
    """The pipeline's input model; None for a pipeline whose input is free-form."""
    return INPUT_MODELS.get(pipeline)


_FREE_FORM: TypeAdapter[dict[str, Any]] = TypeAdapter(FreeForm)


def checked_input(pipeline: str, data: Any) -> dict[str, Any]:
    """``data`` as the pipeline's job input (normalized by its model), or InvalidInput (400)
    naming each field that is wrong."""
    model = input_model(pipeline)
    try:
        if model is None:
            return _FREE_FORM.validate_python(data)
        return model.model_validate(data).stored()
    except ValidationError as exc:
        raise invalid_input(pipeline, field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as one entry per field, named as the job's input names it (camelCase)."""
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "(input)",
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False)
    ]


def invalid_input(pipeline: str, errors: list[dict[str, str]]) -> InvalidInput:
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return InvalidInput(
        f"the input does not fit the {pipeline} pipeline's input model ({fields})",
        error_field="input",
        fieldErrors=errors,
    )
