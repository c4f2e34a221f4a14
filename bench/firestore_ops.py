"""Firestore reads, writes and deletes per job lifecycle and per sweep, counted on the wire.

    python -m bench.firestore_ops [--jobs 5000] [--stale 20]

A gRPC client interceptor on the Firestore client's channel sees every RPC the code makes and
counts what Firestore bills (https://cloud.google.com/firestore/pricing):
- a read per document a get, a transactional get or a query returns; a query that returns nothing
  still costs one; an aggregation (count) costs one per 1,000 index entries it counts, at least one;
- a write per document a commit creates, sets or updates (server-side transforms included);
- a delete per document a commit deletes.
Documents written with an expiry (``expireAt`` / ``expire_at``, Firestore TTL) are deleted by TTL
later, which Firestore bills as deletes; those are counted too.

Measured, on the emulators with the fake outside world:
- one video job: signed webhook over HTTP -> intake -> Pub/Sub -> worker, received to published;
- one Music Clips job: runOnce -> worker (STAGE_40) -> Suno's callback over HTTP -> STAGE_50;
- one sweep over ``--jobs`` active jobs of which ``--stale`` are stale, and an idle scheduler tick
  (sweeper and poller with nothing to do).
Prints one JSON object, with the cost per million jobs at the list prices in ``PRICES_USD``.
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import grpc
import requests
from google.cloud import firestore, pubsub_v1  # type: ignore[attr-defined]

from devtools.fakes.world import FakeWorld
from devtools.local.serve import BackgroundServer, function_app
from infra import emulators as emu
from infra.bootstrap import bootstrap
from services.clients import Clients
from services.intake import SIGNATURE_HEADER, handle_webhook, sign
from services.jobs.models import Job, JobCreate
from services.messages import PushEnvelope
from services.music_clips import poller
from services.music_clips.callback import handle_suno_callback
from services.music_clips.service import RunOnceRequest, run_once
from services.pipelines.spec import JobStatus
from services.runtime import Runtime
from services.settings import Settings
from services.sweeper import sweep_stale_jobs
from services.worker.engine import Worker

PROJECT = "jobtrail-bench"
# Firestore list prices, default (Standard) edition, per 100,000 operations, USD (the assumption
# this report's costs rest on; regional prices differ slightly, the free tier is ignored).
PRICES_USD = {"reads": 0.06, "writes": 0.18, "deletes": 0.02}
_TTL_FIELDS = ("expireAt", "expire_at")


# ---- counting ---------------------------------------------------------------------------------------
def _is_timestamp(value: Any) -> bool:
    """A TTL field only expires the document when it holds a time (null means never)."""
    return value is not None and value._pb.WhichOneof("value_type") == "timestamp_value"


class FirestoreMeter(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Counts billable operations of every Firestore RPC passing through the channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.calls: Counter[str] = Counter()
            self.reads = self.writes = self.deletes = 0
            self.expiring: set[str] = set()  # documents written with a TTL field

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "reads": self.reads,
                "writes": self.writes,
                "deletes": self.deletes,
                "ttl_deletes_later": len(self.expiring),
                "rpcs": dict(sorted(self.calls.items())),
            }

    @staticmethod
    def _method(details: grpc.ClientCallDetails) -> str:
        return str(details.method).rsplit("/", 1)[-1]

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = self._method(details)
        with self._lock:
            self.calls[method] += 1
            if method == "Commit":
                for write in request.writes:
                    if write.delete:
                        self.deletes += 1
                        continue
                    self.writes += 1
                    if write.update and any(_is_timestamp(write.update.fields.get(f)) for f in _TTL_FIELDS):
                        self.expiring.add(write.update.name)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        method = self._method(details)
        with self._lock:
            self.calls[method] += 1
        return _CountedStream(continuation(details, request), method, self)

    def count_response(self, method: str, message: Any) -> int:
        """Reads billed for one streamed response."""
        if method == "BatchGetDocuments":
            return 1 if (message.found.name or message.missing) else 0
        if method == "RunQuery":
            return 1 if message.document.name else 0
        if method == "RunAggregationQuery":
            counted = [v.integer_value for v in message.result.aggregate_fields.values()]
            return max(1, math.ceil(max(counted, default=0) / 1000))
        return 0

    def add_reads(self, n: int) -> None:
        with self._lock:
            self.reads += n


class _CountedStream:
    """The RPC's response stream, unchanged for its reader; counts what passes through."""

    def __init__(self, call: Any, method: str, meter: FirestoreMeter) -> None:
        self._call, self._method, self._meter = call, method, meter
        self._billed = 0

    def __iter__(self) -> _CountedStream:
        return self

    def __next__(self) -> Any:
        try:
            message = next(self._call)
        except StopIteration:
            # A query that returned nothing still costs one read.
            if self._method == "RunQuery" and self._billed == 0:
                self._meter.add_reads(1)
            raise
        billed = self._meter.count_response(self._method, message)
        self._billed += billed
        self._meter.add_reads(billed)
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class MeteredFirestore(firestore.Client):
    """The google.cloud.firestore client with the meter on its (emulator) channel."""

    def __init__(self, meter: FirestoreMeter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meter = meter

    def _emulator_channel(self, transport: Any) -> Any:
        return grpc.intercept_channel(super()._emulator_channel(transport), self.meter)


@contextmanager
def measured(meter: FirestoreMeter) -> Iterator[dict[str, Any]]:
    """The operations of the block, filled in when it ends."""
    meter.reset()
    out: dict[str, Any] = {}
    yield out
    out.update(meter.snapshot())


# ---- the lifecycles -----------------------------------------------------------------------------------
def wait_until(probe: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def pull_one(subscription: str) -> PushEnvelope:
    """The next message of a pull subscription, as Pub/Sub would push it (then acked)."""
    subscriber = pubsub_v1.SubscriberClient()
    try:
        for _ in range(50):
            answer = subscriber.pull(request={"subscription": subscription, "max_messages": 1}, timeout=10)
            if answer.received_messages:
                received = answer.received_messages[0]
                subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [received.ack_id]})
                message = received.message
                return PushEnvelope.model_validate(
                    {
                        "message": {
                            "data": base64.b64encode(message.data).decode(),
                            "attributes": dict(message.attributes),
                            "messageId": message.message_id,
                        },
                        "subscription": subscription,
                        "deliveryAttempt": 1,
                    }
                )
            time.sleep(0.1)
    finally:
        subscriber.close()
    raise RuntimeError(f"no message on {subscription}")


def video_lifecycle(
    rt: Runtime, meter: FirestoreMeter, subscriptions: dict[str, str], peek: Runtime
) -> dict[str, Any]:
    body = json.dumps(
        {
            "accountId": "acc-bench",
            "scenarioId": "reels",
            "sourceId": f"src-{uuid.uuid4().hex[:6]}",
            "userId": "user-1",
            "deliveryId": uuid.uuid4().hex,
            "videoUrl": "https://videos.example/clip.mp4",
            "caption": "bench",
        }
    ).encode()
    secret = rt.settings.webhook_hmac_secret.get_secret_value()
    with BackgroundServer(function_app(handle_webhook, rt, "intake")) as intake, measured(meter) as ops:
        answer = requests.post(
            intake.url, data=body, headers={SIGNATURE_HEADER: sign(secret, body)}, timeout=30
        )
        answer.raise_for_status()
        outcome = rt.shared(Worker).handle(pull_one(subscriptions["video-worker"]))
    job = peek.repo.get_job(answer.json()["jobId"])
    if outcome.reason != "DONE" or job.status is not JobStatus.SUCCEEDED:
        raise RuntimeError(f"video job did not finish: {outcome.reason}, {job.stage}")
    return {"stages": len(peek.repo.list_events(job.job_id)), **ops}


def music_lifecycle(
    rt: Runtime, meter: FirestoreMeter, subscriptions: dict[str, str], peek: Runtime
) -> dict[str, Any]:
    with measured(meter) as ops:
        job, _ = run_once(rt, "channel-bench", "user-1", RunOnceRequest(), idempotency_key=uuid.uuid4().hex)
        outcome = rt.shared(Worker).handle(pull_one(subscriptions["music-worker"]))
        # Suno calls back (the fake, after callback_delay_s) to the callback served on rt.
        wait_until(lambda: peek.repo.get_job(job.job_id).status.is_terminal, "Suno's callback")
    finished: Job = peek.repo.get_job(job.job_id)
    if outcome.reason != "DONE" or finished.status is not JobStatus.SUCCEEDED:
        raise RuntimeError(f"music job did not finish: {outcome.reason}, {finished.stage}")
    return {"stages": len(peek.repo.list_events(job.job_id)), **ops}


def seed_active_jobs(rt: Runtime, n_jobs: int, n_stale: int) -> None:
    """``n_jobs`` active video jobs, ``n_stale`` of them past their stage's limit."""
    template, _ = rt.repo.create_job(
        JobCreate(pipeline="video", account_id="acc-sweep", scenario_id="reels", source_id="tpl", user_id="u")
    )
    now = rt.repo.clock()
    jobs = [
        template.model_copy(
            update={
                "job_id": f"job_sweep_{n:05d}",
                "source_id": f"s{n}",
                "trace_id": f"acc-sweep-reels-s{n}",
                "stale_at": now - timedelta(minutes=1) if n < n_stale else now + timedelta(hours=1),
            }
        )
        for n in range(n_jobs - 1)
    ]
    rt.repo.put_jobs(jobs)


def cost_per_million(ops: dict[str, Any]) -> dict[str, float]:
    deletes = ops["deletes"] + ops["ttl_deletes_later"]
    usd = {
        "reads": ops["reads"] * PRICES_USD["reads"] / 100_000 * 1_000_000,
        "writes": ops["writes"] * PRICES_USD["writes"] / 100_000 * 1_000_000,
        "deletes": deletes * PRICES_USD["deletes"] / 100_000 * 1_000_000,
    }
    return {**{k: round(v, 2) for k, v in usd.items()}, "total": round(sum(usd.values()), 2)}


def run(n_jobs: int = 5000, n_stale: int = 20) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as logs,
        emu.running(project=PROJECT, log_dir=Path(logs)) as started,
        FakeWorld() as world,
    ):
        world.configure(suno={"callback_delay_s": 1.0})
        base = world.settings(
            Settings(
                google_cloud_project=PROJECT,
                firestore_emulator_host=started["firestore"].host,
                pubsub_emulator_host=started["pubsub"].host,
                collection_prefix=f"ops{uuid.uuid4().hex[:6]}_",
                metrics_exporter="none",
            )
        )
        meter = FirestoreMeter()
        Clients(base).point_at_emulators()
        clients = Clients(base, _firestore=MeteredFirestore(meter, project=PROJECT))
        plain = Clients(base)  # for waiting and checking: not counted
        try:
            subscriptions = bootstrap(PROJECT)  # pull subscriptions: this bench delivers by hand
            peek = Runtime(base, plain)
            callback = BackgroundServer(
                function_app(handle_suno_callback, Runtime(base, clients), "callback")
            )
            try:
                rt = Runtime(base.model_copy(update={"public_base_url": callback.url}), clients)
                video = video_lifecycle(rt, meter, subscriptions, peek)
                music = music_lifecycle(rt, meter, subscriptions, peek)
            finally:
                callback.stop()
            seed_active_jobs(rt, n_jobs, n_stale)
            with measured(meter) as sweep:
                report = sweep_stale_jobs(rt)
            with measured(meter) as idle:
                sweep_stale_jobs(rt)
                poller.poll_music_jobs(rt)
        finally:
            clients.close()
            plain.close()
    if report.timed_out != n_stale:
        raise RuntimeError(f"the sweep timed out {report.timed_out} jobs, not {n_stale}")
    return {
        "benchmark": "firestore_operations",
        "prices_usd_per_100k": PRICES_USD,
        "price_source": "https://cloud.google.com/firestore/pricing (Standard edition list prices; assumption)",
        "video_job": {**video, "usd_per_million_jobs": cost_per_million(video)},
        "music_job": {**music, "usd_per_million_jobs": cost_per_million(music)},
        "sweep": {"jobs": n_jobs, "stale": n_stale, "timed_out": report.timed_out, **sweep},
        "idle_scheduler_tick": {
            **idle,
            "note": "sweeper + Suno poller with nothing to do, once a minute each in the cloud",
            "usd_per_month": round(idle["reads"] * 60 * 24 * 30 * PRICES_USD["reads"] / 100_000, 4),
        },
    }


@click.command()
@click.option("--jobs", "n_jobs", default=5000, show_default=True, help="Active jobs when sweeping.")
@click.option("--stale", "n_stale", default=20, show_default=True, help="Of which stale.")
def main(n_jobs: int, n_stale: int) -> None:
    click.echo(json.dumps(run(n_jobs, n_stale), indent=2))


if __name__ == "__main__":
    main()
