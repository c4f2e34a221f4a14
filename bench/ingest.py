"""Ingest throughput: reports/s on one ingest process, beside the worker's own transitions/s, same run.

    python -m bench.ingest [--jobs 200] [--clients 16] [--heartbeats 2] [--worker-jobs 200]

One API process (functions-framework, as Cloud Run runs it) over the emulators takes the reports of
``--clients`` concurrent reporting services: each creates a clip_render job, then reports its
stages (rendering, rendered, uploading, succeeded) with heartbeats in between. Then, in the same
run and on the same emulators, the worker (in-process, no-op handlers) moves video-shaped jobs
through their six stage changes. Both figures are stage changes committed to Firestore per second
(one transaction each, job and event together), so they compare as a ratio. Prints one JSON object.
The machine is shared: read the ratio, not the absolute figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import requests

from bench.pipeline import NOOP_STEPS, PROJECT, bench_worker, percentile
from infra import emulators as emu
from infra.bootstrap import bootstrap
from services.auth import hash_api_key
from services.clients import Clients
from services.runtime import Runtime
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REPORTER_KEY = "rk_bench_0123456789abcdef"
STAGES = ("rendering", "rendered", "uploading")


def start_api(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    assert settings.firestore_emulator_host
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": settings.google_cloud_project,
        "FIRESTORE_EMULATOR_HOST": settings.firestore_emulator_host,
        "INGEST_API_KEY_HASHES": json.dumps({hash_api_key(REPORTER_KEY): "clip-render"}),
        "TRACE_EXPORTER": "none",
        "METRICS_EXPORTER": "none",
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "functions" / "api.py"),
            "--target", "api", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=15).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"the API did not start; see {log}")


def bench_ingest(url: str, n_jobs: int, n_clients: int, heartbeats: int) -> dict[str, Any]:
    headers = {"X-Reporter-Key": REPORTER_KEY}
    latencies: list[float] = []
    failures: list[str] = []

    def post(session: requests.Session, path: str, body: dict[str, Any]) -> None:
        started = time.perf_counter()
        response = session.post(f"{url}{path}", json=body, headers=headers, timeout=30)
        latencies.append(time.perf_counter() - started)
        if response.status_code >= 300:
            failures.append(f"{response.status_code} {response.text[:200]}")

    def one_job(i: int) -> None:
        with requests.Session() as session:
            key = f"bench-{i}"
            job = {"pipeline": "clip_render", "idempotencyKey": key}
            post(session, "/api/ingest/jobs", {**job, "accountId": "acc", "scenarioId": "bench",
                                               "sourceId": key, "userId": "bench"})  # fmt: skip
            for stage in STAGES:
                post(session, "/api/ingest/reports", {"job": job, "type": "stage", "stage": stage})
                for _ in range(heartbeats):
                    post(session, "/api/ingest/reports", {"job": job, "type": "heartbeat"})
            post(session, "/api/ingest/reports", {"job": job, "type": "succeeded", "result": {"n": i}})

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n_clients) as pool:
        list(pool.map(one_job, range(n_jobs)))
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} ingest requests failed, e.g. {failures[:3]}")
    stage_changes = n_jobs * (len(STAGES) + 1)
    reports = n_jobs * (len(STAGES) * (1 + heartbeats) + 1)
    return {
        "jobs": n_jobs,
        "clients": n_clients,
        "requests": len(latencies),
        "reports": reports,
        "reports_per_second": round(reports / elapsed, 1),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "stage_changes_per_second": round(stage_changes / elapsed, 1),
        "latency_ms_p50": round(percentile(latencies, 50) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 99) * 1000, 1),
    }


def run(n_jobs: int, n_clients: int, heartbeats: int, worker_jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as logs, emu.running(project=PROJECT, log_dir=Path(logs)) as started:
        settings = Settings(
            google_cloud_project=PROJECT,
            firestore_emulator_host=started["firestore"].host,
            pubsub_emulator_host=started["pubsub"].host,
            metrics_exporter="none",
            worker_max_concurrency=8,
        )
        clients = Clients(settings)
        port = emu.free_port()
        api = start_api(settings, port, Path(logs) / "api.log")
        try:
            ingest = bench_ingest(f"http://127.0.0.1:{port}", n_jobs, n_clients, heartbeats)
        finally:
            os.killpg(api.pid, signal.SIGTERM)
            api.wait(timeout=30)
        try:
            clients.point_at_emulators()
            bootstrap(PROJECT)
            worker = bench_worker(Runtime(settings, clients), worker_jobs, settings.worker_max_concurrency)
        finally:
            clients.close()
        changes_per_job = 2 * len(NOOP_STEPS)  # each step: its start stage, then its done stage
        worker["stage_changes_per_second"] = round(worker["tracked_jobs_per_second"] * changes_per_job, 1)
        return {
            "ingest": ingest,
            "worker": worker,
            "ingest_to_worker_stage_changes_ratio": round(
                ingest["stage_changes_per_second"] / worker["stage_changes_per_second"], 3
            ),
            "note": "one machine shared with other work; compare the ratio, not the absolute figures",
        }


@click.command()
@click.option("--jobs", "n_jobs", default=200, show_default=True)
@click.option("--clients", "n_clients", default=16, show_default=True)
@click.option("--heartbeats", default=2, show_default=True, help="Heartbeats after each stage report.")
@click.option("--worker-jobs", default=200, show_default=True)
def main(n_jobs: int, n_clients: int, heartbeats: int, worker_jobs: int) -> None:
    click.echo(json.dumps(run(n_jobs, n_clients, heartbeats, worker_jobs), indent=2))


if __name__ == "__main__":
    main()
