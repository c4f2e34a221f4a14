"""The shortened soak: the whole local stack, a few hundred jobs over both pipelines, every fault of
the full soak (devtools/local/soak.py) once or twice, then the reconciliation, which must be clean.

It starts its own stack (emulators included), so it shares nothing with the session's emulators.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.local.soak import SoakPlan, run_soak

pytestmark = pytest.mark.emulator

# Wider Suno windows than the full soak's: a few hundred jobs must still put some through each.
SHORT = SoakPlan(
    jobs=200,
    minutes=2.5,
    poison=3,
    cancels=3,
    suno_never_window=(0.02, 0.08),
    suno_no_callback_window=(0.1, 0.16),
)


@pytest.mark.timeout(600)
def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    result = run_soak(SHORT, tmp_path / "stack", progress=lambda line: None)
    # Kept beside the stack's logs for whoever reads the figures (extra generations, latencies).
    (tmp_path / "result.json").write_text(json.dumps(result, indent=1, default=str))

    failed = [c for c in result["checks"] if not c["ok"]]
    assert result["ok"], json.dumps(failed, indent=1, default=str)
    # Every fault really happened, and the paths the checks cover were really taken.
    assert result["traffic"]["accepted"] == SHORT.jobs
    assert len(result["faults"]["worker_restarts"]) == 2 and len(result["faults"]["firestore_outages"]) == 1
    assert result["jobs"]["dead_lettered"] >= SHORT.poison
    assert (
        result["jobs"]["suno_never_finished"] > 0 and result["jobs"]["by_error_code"]["DEADLINE_EXCEEDED"] > 0
    )
    assert result["jobs"]["music_finished_by_poller"] > 0 and result["jobs"]["music_finished_by_callback"] > 0
    assert result["jobs"]["suno_tasks_called_back_twice_or_more"] > 0
    assert result["traffic"]["duplicate_submissions"] > 0
    # Each cancel is timed, and a video job's cancel lands while its worker waits on the download.
    cancels = result["faults"]["cancels"]
    assert cancels["count"] == SHORT.cancels and cancels["seconds_to_cancelled"]["max"] is not None
    videos = [c for c in cancels["each"] if c["pipeline"] == "video"]
    assert all(c["answer"] == 202 and "during step download" in c["how"] for c in videos), videos
