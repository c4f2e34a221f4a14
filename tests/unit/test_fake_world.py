"""The fake world itself: its control API, its seeded faults, its loopback-only callbacks, its CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from devtools.fakes.world import FakeWorld, FakeWorldConfig, ServiceFaults
from services.settings import Settings


@pytest.fixture
def world() -> Iterator[FakeWorld]:
    with FakeWorld(FakeWorldConfig(seed=1)) as w:
        yield w


def test_control_api_changes_faults_at_run_time(world: FakeWorld) -> None:
    changed = requests.post(f"{world.url}/_control", json={"video": {"fail_next_n": 1}}, timeout=5)
    failed = requests.post(
        f"{world.url}/video/download", json={"video_url": "https://v/a", "job_id": "j"}, timeout=5
    )
    served = requests.post(
        f"{world.url}/video/download", json={"video_url": "https://v/a", "job_id": "j"}, timeout=5
    )

    assert changed.status_code == 200
    assert changed.json()["video"]["fail_next_n"] == 1
    assert (failed.status_code, served.status_code) == (503, 200)
    assert failed.json() == {"code": 503, "msg": "video is unavailable (fail_next_n)", "data": None}
    stats = requests.get(f"{world.url}/_stats", timeout=5).json()
    assert stats["calls"] == {"video.download": 2}
    assert stats["failures_injected"] == {"video.download": 1}
    assert requests.get(f"{world.url}/_control", timeout=5).json()["video"]["fail_next_n"] == 0


@pytest.mark.parametrize(
    "change",
    [{"video": {"failure_rate": 1.5}}, {"video": {"no_such_knob": 1}}, {"suno": {"result": "maybe"}}],
)
def test_control_api_refuses_an_invalid_config(world: FakeWorld, change: dict[str, object]) -> None:
    answer = requests.post(f"{world.url}/_control", json=change, timeout=5)

    assert answer.status_code == 400
    assert answer.json()["error"] == "INVALID_CONFIG"
    assert world.config == FakeWorldConfig(seed=1)


def test_control_api_never_shows_the_configured_suno_key(world: FakeWorld) -> None:
    world.configure(suno={"api_key": "fake-world-secret"})

    shown = requests.get(f"{world.url}/_control", timeout=5).text

    assert "fake-world-secret" not in shown
    assert "**********" in shown


def test_reset_restores_the_starting_config_and_clears_the_counters(world: FakeWorld) -> None:
    world.configure(processor={"permanent_failure": True})
    requests.post(f"{world.url}/processor/process", json={"location": "x", "job_id": "j"}, timeout=5)

    requests.post(f"{world.url}/_control", json={"reset": True}, timeout=5)

    assert world.config.processor == ServiceFaults()
    assert world.stats()["calls"] == {}


def _statuses(seed: int, n: int = 24) -> list[int]:
    with FakeWorld(FakeWorldConfig(seed=seed, processor=ServiceFaults(failure_rate=0.5))) as w:
        return [
            requests.post(
                f"{w.url}/processor/process", json={"location": "x", "job_id": "j"}, timeout=5
            ).status_code
            for _ in range(n)
        ]


def test_faults_are_seeded_so_every_run_sees_the_same_ones() -> None:
    first, again, other = _statuses(seed=3), _statuses(seed=3), _statuses(seed=4)

    assert first == again
    assert set(first) == {200, 503}
    assert other != first


def test_callbacks_go_to_loopback_only(world: FakeWorld) -> None:
    world.configure(suno={"callback_delay_s": 0.0})
    answer = requests.post(
        f"{world.url}/suno/api/v1/generate",
        json={
            "prompt": "p",
            "customMode": False,
            "instrumental": False,
            "callBackUrl": "https://example.com/cb",
        },
        headers={"Authorization": "Bearer any"},
        timeout=5,
    )
    task_id = answer.json()["data"]["taskId"]

    deadline = time.monotonic() + 5
    while world.stats()["callbacks"] == {} and time.monotonic() < deadline:
        time.sleep(0.02)

    assert world.stats()["callbacks"] == {"refused": 1}
    assert world.stats()["suno_tasks"][task_id] == {
        "status": "SUCCESS",
        "callbacks_sent": 0,
        "job_attempt": None,
    }


def test_suno_requires_a_bearer_token(world: FakeWorld) -> None:
    answer = requests.get(f"{world.url}/suno/api/v1/generate/credit", timeout=5)

    assert answer.status_code == 401


def test_settings_point_every_client_at_the_world(world: FakeWorld) -> None:
    settings = world.settings(Settings(), external_max_attempts=1)

    assert settings.video_source_url == f"{world.url}/video"
    assert settings.processor_url == f"{world.url}/processor"
    assert settings.instagram_url == f"{world.url}/instagram"
    assert settings.suno_api_url == f"{world.url}/suno"
    assert settings.external_max_attempts == 1


def test_runs_standalone_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.fakes.world", "--port", "0", "--seed", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.strip().rsplit(" ", 1)[-1]
        assert banner.startswith("fake world listening on http://127.0.0.1:")
        assert requests.get(f"{url}/_control", timeout=5).json()["seed"] == 2
    finally:
        process.terminate()
        returncode = process.wait(timeout=10)
        process.stdout.close()  # type: ignore[union-attr]

    assert returncode == 0


def test_a_callback_the_receiver_refuses_is_counted_with_its_reason(world: FakeWorld) -> None:
    world.configure(suno={"callback_delay_s": 0.0})
    requests.post(
        f"{world.url}/suno/api/v1/generate",
        json={
            "prompt": "p",
            "customMode": False,
            "instrumental": False,
            "callBackUrl": f"{world.url}/nowhere",
        },
        headers={"Authorization": "Bearer any"},
        timeout=5,
    ).raise_for_status()

    deadline = time.monotonic() + 5
    while world.stats()["callbacks"] == {} and time.monotonic() < deadline:
        time.sleep(0.02)

    assert world.stats()["callbacks"] == {"failed": 1}
    assert world.stats()["callback_failures"] == {"HTTP 404": 1}
