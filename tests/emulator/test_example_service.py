"""The example service (examples/clip_render) against jobtrail, both as deployed processes
(functions-framework) over the emulators: the example consumes its own Pub/Sub push subscription
and reports with jobtrail_client.

- its job walks its stages in the API and on the live stream (GET /api/stream, public behaviour
  only: "job" events carrying the job's view);
- killed mid-job, it stops heartbeating and the sweeper times the job out;
- jobtrail's API down for 10 s while the example works loses no report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from pydantic import SecretStr

from infra import emulators as emu
from services.auth import hash_api_key, mint_token
from services.jobs.models import Job
from services.runtime import Runtime
from services.settings import Settings
from services.sweeper import sweep_stale_jobs
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
REPORTER_KEY = "rk_clip_render_example_0123456789"
JWT_SECRET = "example-service-tests-secret-of-enough-length"
WALK = ["requested", "rendering", "rendered", "uploading", "delivered"]


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    return Runtime(settings.model_copy(update={"jwt_secret": SecretStr(JWT_SECRET)}), clients)


def _answers(url: str) -> bool:
    try:
        # The first request builds the app: slow on a loaded machine.
        return requests.get(f"{url}/openapi.json", timeout=15).status_code < 500
    except requests.RequestException:
        return False


@contextmanager
def process(
    argv: list[str], env: dict[str, str], log: Path, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process in its own process group, stopped (whole group) on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: _answers(ready_url), timeout=60, what=f"{argv[-5]} to start (see {log})")
        yield proc
    finally:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def functions_framework(source: str, target: str, port: int) -> list[str]:
    return [sys.executable, "-m", "functions_framework", "--source", str(ROOT / source), "--target", target,
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


def jobtrail_api(rt: Runtime, port: int, log: Path):
    """jobtrail's API service, as Cloud Run runs it."""
    s = rt.settings
    assert s.firestore_emulator_host
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": s.google_cloud_project,
        "FIRESTORE_EMULATOR_HOST": s.firestore_emulator_host,
        "COLLECTION_PREFIX": s.collection_prefix,
        "TOPIC_PREFIX": s.topic_prefix,
        "JWT_SECRET": JWT_SECRET,
        "INGEST_API_KEY_HASHES": json.dumps({hash_api_key(REPORTER_KEY): "clip-render"}),
        "TRACE_EXPORTER": "none",
        "METRICS_EXPORTER": "none",
        "SSE_HEARTBEAT_SECONDS": "1",
    }
    return process(functions_framework("functions/api.py", "api", port), env, log, f"http://127.0.0.1:{port}")


@pytest.fixture
def example(rt: Runtime, tmp_path: Path):
    """Start the example (its own env, its own push subscription); yields a function that
    publishes a render order to it."""
    started: list[Any] = []
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    project, prefix = rt.settings.google_cloud_project, rt.settings.topic_prefix
    topic = publisher.topic_path(project, f"{prefix}clip-render-requests")
    subscription = subscriber.subscription_path(project, f"{prefix}clip-render-worker")

    @contextmanager
    def start(api_url: str, **tuning: str) -> Iterator[Any]:
        port = emu.free_port()
        env = {
            **os.environ,
            "JOBTRAIL_URL": api_url,
            "JOBTRAIL_REPORTER_KEY": REPORTER_KEY,
            "RENDER_SECONDS": "3",
            "UPLOAD_SECONDS": "2",
            "HEARTBEAT_SECONDS": "1",
            **tuning,
        }
        argv = functions_framework("examples/clip_render/main.py", "render_clip", port)
        with process(argv, env, tmp_path / "example.log", f"http://127.0.0.1:{port}") as proc:
            publisher.create_topic(name=topic)
            subscriber.create_subscription(
                request={
                    "name": subscription,
                    "topic": topic,
                    "ack_deadline_seconds": 60,
                    "push_config": {"push_endpoint": f"http://127.0.0.1:{port}/"},
                }
            )
            started.append(True)

            def order(clip_id: str) -> None:
                data = json.dumps(
                    {"clipId": clip_id, "accountId": "acc-1", "scenarioId": "clips", "userId": "alice"}
                )
                publisher.publish(topic, data.encode()).result(timeout=30)

            order.proc = proc  # type: ignore[attr-defined]
            yield order

    yield start
    if started:
        subscriber.delete_subscription(subscription=subscription)
        publisher.delete_topic(topic=topic)
    subscriber.close()
    publisher.stop()


class StreamReader:
    """GET /api/stream as an admin, collecting the "job" events' data in a thread."""

    def __init__(self, url: str, token: str, **params: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.response = requests.get(
            f"{url}/api/stream",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            stream=True,
            timeout=60,
        )
        assert self.response.status_code == 200
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event = None
        with suppress(requests.RequestException, ValueError, AttributeError):
            for line in self.response.iter_lines():
                if line.startswith(b"event:"):
                    event = line.split(b":", 1)[1].strip()
                elif line.startswith(b"data:") and event == b"job":
                    self.events.append(json.loads(line.split(b":", 1)[1]))

    def stages_of(self, job_id: str) -> list[str]:
        stages: list[str] = []
        for event in list(self.events):
            if event.get("jobId") == job_id and (not stages or stages[-1] != event.get("stage")):
                stages.append(event["stage"])
        return stages

    def close(self) -> None:
        self.response.close()


def reported_job(rt: Runtime, clip_id: str) -> Job | None:
    return rt.repo.find_by_idempotency_key(f"ingest:clip_render:{clip_id}")


def test_the_example_job_walks_its_stages_in_the_api_and_on_the_live_stream(rt, example, tmp_path):
    port = emu.free_port()
    url = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {mint_token(rt.settings, 'ops', 'admin')}"}
    with jobtrail_api(rt, port, tmp_path / "api.log"), example(url) as order:
        stream = StreamReader(url, mint_token(rt.settings, "ops", "admin"), pipeline="clip_render")
        try:
            order("clip-1")
            job = wait_for(
                lambda: (j := reported_job(rt, "clip-1")) is not None and j.status == "succeeded" and j,
                timeout=90,
                what="the example's job to succeed",
            )
            wait_for(
                lambda: "delivered" in stream.stages_of(job.job_id),
                timeout=30,
                what="delivered on the stream",
            )
            seen = stream.stages_of(job.job_id)
        finally:
            stream.close()
        events = requests.get(f"{url}/api/jobs/{job.job_id}/events", headers=admin, timeout=10).json()
        status = requests.get(f"{url}/api/jobs/{job.job_id}", headers=admin, timeout=10).json()

    assert [e.to_stage for e in rt.repo.list_events(job.job_id)] == WALK
    assert [e["toStage"] for e in events["events"]] == WALK
    assert "delivered" in json.dumps(status) and "acc-1-clips-clip-1" in json.dumps(status)
    # The stream shows the walk in order; the running stages are long enough to be seen.
    assert seen == [s for s in WALK if s in seen] and {"rendering", "uploading", "delivered"} <= set(seen)
    assert rt.repo.get_job(job.job_id).cost.total > 0  # compute seconds reported with each stage


def test_killing_the_example_mid_job_lets_the_sweeper_time_the_job_out(rt, example, tmp_path):
    port = emu.free_port()
    url = f"http://127.0.0.1:{port}"
    with jobtrail_api(rt, port, tmp_path / "api.log"), example(url, RENDER_SECONDS="600") as order:
        order("clip-killed")
        rendering = wait_for(
            lambda: (j := reported_job(rt, "clip-killed")) is not None and j.stage == "rendering" and j,
            timeout=60,
            what="the job to start rendering",
        )
        # Alive: its heartbeats keep pushing the stale deadline.
        wait_for(
            lambda: rt.repo.get_job(rendering.job_id).stale_at > rendering.stale_at,
            timeout=30,
            what="a heartbeat",
        )
        os.killpg(order.proc.pid, signal.SIGKILL)
        order.proc.wait(timeout=10)
        # Quiet now: the deadline stops moving once the last heartbeat in flight has landed.
        last = [rt.repo.get_job(rendering.job_id).stale_at]

        def settled() -> bool:
            time.sleep(1.5)
            now = rt.repo.get_job(rendering.job_id).stale_at
            same, last[0] = now == last[0], now
            return same

        wait_for(settled, timeout=30, what="the heartbeats to stop")
        stale_at = last[0]
        assert stale_at is not None

    assert sweep_stale_jobs(rt, now=stale_at - timedelta(seconds=1)).timed_out == 0
    assert sweep_stale_jobs(rt, now=stale_at + timedelta(seconds=1)).by_pipeline == {"clip_render": 1}
    job = rt.repo.get_job(rendering.job_id)
    assert job.stage == "timed_out" and job.error is not None and job.error.code == "STALE_HEARTBEAT"


def test_ten_seconds_without_jobtrail_loses_no_report(rt, example, tmp_path):
    port = emu.free_port()
    url = f"http://127.0.0.1:{port}"
    with example(url, RENDER_SECONDS="2", UPLOAD_SECONDS="2") as order:
        # jobtrail is not there while the example takes the order, renders and uploads.
        order("clip-offline")
        time.sleep(10)
        assert reported_job(rt, "clip-offline") is None
        with jobtrail_api(rt, port, tmp_path / "api.log"):
            job = wait_for(
                lambda: (j := reported_job(rt, "clip-offline")) is not None and j.status == "succeeded" and j,
                timeout=60,
                what="the buffered reports to land",
            )
    assert [e.to_stage for e in rt.repo.list_events(job.job_id)] == WALK
    assert job.result == {"url": "gs://clips/clip-offline.mp4"}
