"""Each pipeline's input model (what an operator's edit of a dead letter is checked against) takes
exactly what the entry points that create its jobs store, and refuses anything else by field."""

from __future__ import annotations

import pytest

from services.control import input_diff
from services.dlq import error_code_of
from services.errors import InvalidInput
from services.intake import VideoWebhook
from services.music_clips.service import RunOnceRequest
from services.pipelines.inputs import INPUT_MODELS, checked_input
from services.pipelines.registry import PIPELINES


def test_the_video_webhook_and_run_once_store_inputs_their_models_take_unchanged():
    webhook = VideoWebhook.model_validate(
        {
            "accountId": "a",
            "scenarioId": "s",
            "sourceId": "x",
            "userId": "u",
            "deliveryId": "d",
            "videoUrl": "https://videos.example/clip.mp4",
            "caption": "hello",
        }
    )
    # As services/intake.py and services/music_clips/service.py build them.
    video = {"videoUrl": str(webhook.video_url), "caption": webhook.caption}
    run = RunOnceRequest(prompt="p", style="s", title="t", instrumental=True)
    music = {
        "channelId": "ch-1",
        "prompt": run.prompt,
        "style": run.style,
        "title": run.title,
        "instrumental": run.instrumental,
    }
    assert checked_input("video", video) == video
    assert checked_input("music_clips", music) == music


def test_every_pipeline_with_work_in_the_worker_has_an_input_model():
    assert {name for name, spec in PIPELINES.items() if spec.topic} <= set(INPUT_MODELS)


@pytest.mark.parametrize(
    ("pipeline", "data", "fields"),
    [
        ("video", {"videoUrl": "ftp:/nope", "caption": "x" * 2201}, {"videoUrl", "caption"}),
        ("video", {"caption": "no url"}, {"videoUrl"}),
        ("video", {"videoUrl": "https://v/x.mp4", "extra": 1}, {"extra"}),
        ("music_clips", {"channelId": "bad id!", "instrumental": 1}, {"channelId", "instrumental"}),
        ("clip_render", {"": "empty key"}, {""}),
        ("clip_render", {"rows": [[1, 2]]}, {"rows"}),
    ],
)
def test_a_bad_input_names_each_wrong_field(pipeline, data, fields):
    with pytest.raises(InvalidInput) as refused:
        checked_input(pipeline, data)
    errors = refused.value.details["fieldErrors"]
    assert {e["field"].split(".")[0] for e in errors} <= fields | {"(input)"}
    assert errors and all(e["message"] and e["type"] for e in errors)
    assert refused.value.details["error_field"] == "input"


def test_a_pipeline_without_a_model_takes_any_storable_map():
    assert checked_input("clip_render", {"clip": {"id": 1}}) == {"clip": {"id": 1}}


def test_the_diff_names_each_changed_added_and_removed_field_by_its_path():
    before = {"videoUrl": "a", "caption": "c", "meta": {"x": 1, "y": [1]}, "gone": True}
    after = {"videoUrl": "b", "caption": "c", "meta": {"x": 1, "y": [2], "z": 0}}
    assert input_diff(before, after) == [
        {"field": "videoUrl", "change": "changed", "before": "a", "after": "b"},
        {"field": "meta.y", "change": "changed", "before": [1], "after": [2]},
        {"field": "meta.z", "change": "added", "before": None, "after": 0},
        {"field": "gone", "change": "removed", "before": True, "after": None},
    ]
    assert input_diff(before, dict(before)) == []
    # 1 and True are equal in Python, not in JSON: a type change is a change.
    assert input_diff({"n": 1}, {"n": True}) != []


@pytest.mark.parametrize(
    ("last_error", "code"),
    [
        ("VIDEO_SOURCE_ERROR: the source crashed", "VIDEO_SOURCE_ERROR"),
        ("superseded: job moved", None),
        ("dead-lettered before any attempt was recorded", None),
        (None, None),
    ],
)
def test_a_dead_letter_s_cause_is_its_last_attempt_s_error_code(last_error, code):
    assert error_code_of(last_error) == code
