"""Pipelines declared as data: every shipped declaration loads; a bad one is refused at load with
a message that names the file and the problem; the job store never imports a pipeline's handlers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.pipelines.declaration import (
    DECLARED_DIR,
    DeclarationError,
    load_declarations,
    parse_declaration,
)
from services.pipelines.registry import PIPELINES


def minimal(**overrides: Any) -> dict[str, Any]:
    decl: dict[str, Any] = {
        "name": "thumbs",
        "stages": [
            {"name": "requested", "text": "Requested", "timeout_seconds": 60},
            {"name": "working", "text": "Working", "timeout_seconds": 60},
            {"name": "done", "text": "Done"},
        ],
        "terminal": {
            "failed": {"name": "failed", "text": "Failed"},
            "timed_out": {"name": "timed_out", "text": "Timed out"},
            "cancelled": {"name": "cancelled", "text": "Cancelled"},
        },
        "reporters": {"thumbnailer": {"stages": ["working", "done"]}},
    }
    decl.update(overrides)
    return decl


def test_every_shipped_declaration_loads_and_the_built_in_pipelines_keep_their_stages():
    specs = load_declarations()
    assert {"video", "music_clips", "clip_render"} <= set(specs)
    assert [s.name for s in specs["video"].stages] == [
        "received", "downloading", "downloaded", "processing", "processed", "publishing", "published",
    ]  # fmt: skip
    assert specs["video"].topic == "video-jobs" and specs["video"].reporters == {}
    music = specs["music_clips"]
    assert music.max_duration_seconds == 600 and music.retry_from == "STAGE_10_REQUEST_ACCEPTED"
    assert (
        music.attempt_fields == ("suno_task_id", "suno_requested_at")
        and music.timed_out.name == "STAGE_99_TIMEOUT"
    )
    assert music.timeout_error_text is not None and music.timeout_error_text.startswith(
        "Превышено время ожидания генерации"
    )
    assert specs["clip_render"].topic is None
    assert specs["clip_render"].reporters == {
        "clip-render": frozenset({"rendering", "rendered", "uploading", "delivered"})
    }
    assert set(PIPELINES) >= set(specs)


def test_a_valid_declaration_becomes_a_spec():
    spec = parse_declaration(minimal())
    assert spec.initial.name == "requested" and spec.succeeded.name == "done"
    assert spec.stage("working").timeout_seconds == 60 and spec.status_of("done") == "succeeded"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": "bad name"}, "name"),
        ({"stages": [{"name": "only", "text": "x", "timeout_seconds": 5}]}, "at least 2"),
        (
            {"stages": [{"name": "a", "text": "A"}, {"name": "b", "text": "B"}]},
            "needs a timeout_seconds above 0",
        ),
        (
            {"stages": [{"name": "failed", "text": "A", "timeout_seconds": 5}, {"name": "b", "text": "B"}]},
            "unique",
        ),
        ({"reporters": {"thumbnailer": {"stages": ["requested"]}}}, "may write only forward stages"),
        ({"reporters": {"thumbnailer": {"stages": ["timed_out"]}}}, "may write only forward stages"),
        ({"reporters": {"thumbnailer": {"stages": ["nowhere"]}}}, "may write only forward stages"),
        ({"reporters": {"thumbnailer": {"stages": []}}}, "at least 1"),
        ({"retry_from": "nowhere"}, "retry_from"),
        ({"attempt_fields": ["status"]}, "attempt_fields"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_a_bad_declaration_is_refused_naming_the_file_and_the_problem(change, problem):
    with pytest.raises(DeclarationError, match=problem) as caught:
        parse_declaration(minimal(**change), "thumbs.yaml")
    assert str(caught.value).startswith("thumbs.yaml: ")


def test_a_file_must_be_named_after_its_pipeline_and_hold_yaml(tmp_path: Path):
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(minimal()))
    with pytest.raises(DeclarationError, match=r"other.yaml: declares 'thumbs'"):
        load_declarations(tmp_path)
    (tmp_path / "other.yaml").unlink()
    (tmp_path / "thumbs.yaml").write_text("stages: [unclosed")
    with pytest.raises(DeclarationError, match=r"thumbs\.yaml: not YAML"):
        load_declarations(tmp_path)
    (tmp_path / "thumbs.yaml").unlink()
    with pytest.raises(DeclarationError, match="no pipeline declarations"):
        load_declarations(tmp_path)


def test_shipped_declarations_are_in_the_package():
    assert sorted(p.stem for p in DECLARED_DIR.glob("*.yaml")) == sorted(load_declarations())


def test_the_job_store_sweeper_and_ingest_import_no_pipeline_handlers():
    probe = (
        "import sys, services.jobs.repository, services.sweeper, services.ingest.service, services.ingest.push;"
        "print(sorted(m for m in sys.modules if m in {'services.pipelines.handlers',"
        "'services.pipelines.video','services.pipelines.music_clips','services.pipelines.steps','services.worker.engine'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
