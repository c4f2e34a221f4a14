"""Intake latency and throughput, and worker jobs/s with and without tracking, on the emulators.

    python -m bench.pipeline [--requests 1000] [--clients 32] [--jobs 300]

Prints one JSON object. Figures from one run on one machine are compared as ratios (tracked vs
untracked), never against absolute targets: these machines are noisy.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import requests

from devtools.local.serve import BackgroundServer, function_app
from infra import emulators as emu
from infra.bootstrap import bootstrap
from services.clients import Clients
from services.intake import SIGNATURE_HEADER, handle_webhook, sign
from services.jobs.models import JobCreate
from services.messages import JobMessage, PushEnvelope
from services.pipelines.handlers import register_pipeline
from services.pipelines.spec import PipelineSpec
from services.pipelines.steps import Step, StepContext, StepResult
from services.pipelines.video import VIDEO, VIDEO_STEPS
from services.runtime import Runtime
from services.settings import Settings
from services.worker.engine import Worker

PROJECT = "jobtrail-bench"


def _noop(ctx: StepContext) -> StepResult:
    return StepResult()


NOOP = PipelineSpec(
    name="bench_noop",
    stages=VIDEO.stages,
    failed=VIDEO.failed,
    timed_out=VIDEO.timed_out,
    cancelled=VIDEO.cancelled,
    topic=VIDEO.topic,
)
NOOP_STEPS = tuple(Step(s.name, s.start, s.done, _noop) for s in VIDEO_STEPS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bench_intake(rt: Runtime, n_requests: int, n_clients: int) -> dict[str, Any]:
    secret = rt.settings.webhook_hmac_secret.get_secret_value()
    session_per_thread: dict[int, requests.Session] = {}

    def one(i: int, url: str) -> float:
        import threading

        session = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        body = json.dumps(
            {
                "accountId": "acc",
                "scenarioId": "scn",
                "sourceId": f"s{i}",
                "userId": "u",
                "deliveryId": uuid.uuid4().hex,
                "videoUrl": "https://v.example/a.mp4",
            }
        ).encode()
        started = time.perf_counter()
        response = session.post(url, data=body, headers={SIGNATURE_HEADER: sign(secret, body)}, timeout=30)
        elapsed = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"intake answered {response.status_code}: {response.text[:200]}")
        return elapsed

    with BackgroundServer(function_app(handle_webhook, rt, "intake")) as intake:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n_clients) as pool:
            latencies = list(pool.map(lambda i: one(i, intake.url), range(n_requests)))
        wall = time.perf_counter() - started
    return {
        "requests": n_requests,
        "clients": n_clients,
        "requests_per_second": round(n_requests / wall, 1),
        "latency_ms_p50": round(percentile(latencies, 50) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 99) * 1000, 1),
    }


def _envelope(job_id: str, trace_id: str, subscription: str) -> PushEnvelope:
    message = JobMessage(job_id=job_id, pipeline=NOOP.name, trace_id=trace_id)
    return PushEnvelope.model_validate(
        {
            "message": {
                "data": base64.b64encode(message.encode()).decode(),
                "attributes": message.attributes(),
                "messageId": uuid.uuid4().hex,
            },
            "subscription": f"projects/{PROJECT}/subscriptions/{subscription}",
            "deliveryAttempt": 1,
        }
    )


def bench_worker(rt: Runtime, n_jobs: int, concurrency: int) -> dict[str, Any]:
    register_pipeline(NOOP, NOOP_STEPS)
    jobs = [
        rt.repo.create_job(
            JobCreate(pipeline=NOOP.name, account_id="acc", scenario_id="scn", source_id=f"w{i}", user_id="u")
        )[0]
        for i in range(n_jobs)
    ]
    envelopes = [_envelope(j.job_id, j.trace_id, "video-worker") for j in jobs]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(rt.shared(Worker).handle, envelopes))
    tracked = time.perf_counter() - started
    if any(o.reason != "DONE" for o in outcomes):
        raise RuntimeError(f"tracked run did not finish every job: {[o.reason for o in outcomes][:5]}")

    def untracked(envelope: PushEnvelope) -> None:
        # Today's pipeline: decode the push, run the handlers, ack. No job, events or executions.
        envelope.job_message()
        for step in NOOP_STEPS:
            step.handler(StepContext(rt=rt, job=jobs[0], actor="bench", advance=lambda *a, **k: jobs[0]))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(untracked, envelopes))
    untracked_s = time.perf_counter() - started
    tracked_rate, untracked_rate = n_jobs / tracked, n_jobs / untracked_s
    return {
        "jobs": n_jobs,
        "concurrency": concurrency,
        "tracked_jobs_per_second": round(tracked_rate, 1),
        "untracked_jobs_per_second": round(untracked_rate, 1),
        "tracked_to_untracked_ratio": round(tracked_rate / untracked_rate, 5),
        "tracking_overhead_ms_per_job": round((tracked - untracked_s) / n_jobs * 1000, 2),
    }


def run(n_requests: int = 1000, n_clients: int = 32, n_jobs: int = 300) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as logs, emu.running(project=PROJECT, log_dir=Path(logs)) as started:
        settings = Settings(
            google_cloud_project=PROJECT,
            firestore_emulator_host=started["firestore"].host,
            pubsub_emulator_host=started["pubsub"].host,
            metrics_exporter="none",
            worker_max_concurrency=8,
        )
        clients = Clients(settings)
        try:
            clients.point_at_emulators()
            bootstrap(PROJECT)  # pull subscriptions: the intake publishes, nothing consumes
            rt = Runtime(settings, clients)
            return {
                "intake": bench_intake(rt, n_requests, n_clients),
                "worker": bench_worker(rt, n_jobs, settings.worker_max_concurrency),
            }
        finally:
            clients.close()


@click.command()
@click.option("--requests", "n_requests", default=1000, show_default=True)
@click.option("--clients", "n_clients", default=32, show_default=True)
@click.option("--jobs", "n_jobs", default=300, show_default=True)
def main(n_requests: int, n_clients: int, n_jobs: int) -> None:
    click.echo(json.dumps(run(n_requests, n_clients, n_jobs), indent=2))


if __name__ == "__main__":
    main()
