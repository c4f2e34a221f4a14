"""Live updates: 1,000 clients on one API process over SSE, against the same clients polling.

    python -m bench.sse [--clients 1000] [--events 30] [--poll-clients 1000] [--commits 5]

The API runs as deployed: functions-framework (gunicorn, one gthread worker, THREADS sized to hold
every stream) on the Firestore emulator. The clients are one asyncio process (aiohttp).

- SSE: every client holds GET /api/stream as the job's owner; the bench commits ``--events``
  heartbeats to one job (each moves updatedAt) and times each commit (acknowledged to the writer)
  to its receipt by each client.
- Polling, as seed 002's page does: every client GETs /api/jobs/<id> every 3 s (random phase);
  latency is from a commit to the first poll of each client that sees it.

Prints one JSON object: latency percentiles, the server process's memory (RSS) and CPU time, and
how many clients were actually held. Figures from one run on one noisy machine; the clients share
its two cores with the server and the emulator, so latencies include the clients' own queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import click
import requests

from infra import emulators as emu
from services.auth import mint_token
from services.clients import Clients
from services.jobs.models import JobCreate
from services.runtime import Runtime
from services.settings import Settings

PROJECT = "jobtrail-bench"
ROOT = Path(__file__).resolve().parents[1]
OWNER = "bench-user"
# Connections opened at once while clients join (the listen backlog is not the thing measured).
CONNECT_CONCURRENCY = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
UPDATED_AT = re.compile(rb'"updatedAt":"([^"]+)"')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p95_ms": round(percentile(values, 95) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def stamp(iso: str | datetime) -> float:
    """A job's updatedAt as the key that ties a commit to what clients received."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) if isinstance(iso, str) else iso
    return round(moment.timestamp(), 6)


# ---- the server, as deployed ---------------------------------------------------------------------
@dataclass
class ApiProcess:
    proc: subprocess.Popen[bytes]
    url: str

    @classmethod
    def start(cls, settings: Settings, *, threads: int, max_streams: int, log: Path) -> ApiProcess:
        assert settings.firestore_emulator_host and settings.jwt_secret
        port = emu.free_port()
        env = {
            **os.environ,
            "GOOGLE_CLOUD_PROJECT": settings.google_cloud_project,
            "FIRESTORE_EMULATOR_HOST": settings.firestore_emulator_host,
            "COLLECTION_PREFIX": settings.collection_prefix,
            "JWT_SECRET": settings.jwt_secret.get_secret_value(),
            "TRACE_EXPORTER": "none",
            "METRICS_EXPORTER": "none",
            "SSE_MAX_STREAMS": str(max_streams),
            # functions-framework's gthread pool: each open stream holds one thread.
            "THREADS": str(threads),
        }
        argv = [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "functions" / "api.py"),
                "--target", "api", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        server = cls(proc, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited ({proc.returncode}); see {log}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(server.url, timeout=2).status_code == 200:  # builds the app
                    return server
            time.sleep(0.2)
        raise RuntimeError(f"the API did not start; see {log}")

    def worker_pid(self) -> int:
        """gunicorn's one worker (the process that serves): the arbiter's child."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def usage(self) -> dict[str, Any]:
        pid = self.worker_pid()
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return {
            "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
            "threads": int(status["Threads"]),
            "cpu_seconds": round((int(stat[11]) + int(stat[12])) / CLK_TCK, 2),
        }

    def stop(self) -> int | None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def cpu_delta(before: dict[str, Any], after: dict[str, Any], seconds: float) -> float:
    """Share of one core the server used between two readings."""
    return round((after["cpu_seconds"] - before["cpu_seconds"]) / seconds, 3)


# ---- SSE -------------------------------------------------------------------------------------------
async def bench_sse(
    server: ApiProcess, token: str, commit: Callable[[], tuple[float, float]], n_clients: int, n_events: int,
    interval: float,
) -> dict[str, Any]:  # fmt: skip
    received: dict[float, list[float]] = defaultdict(list)  # updatedAt -> receipt times
    hellos = 0
    all_in = asyncio.Event()
    failures: list[str] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            nonlocal hellos
            acquired = released = False
            try:
                await gate.acquire()
                acquired = True
                async with session.get(
                    f"{server.url}/api/stream", headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    if response.status != 200:
                        failures.append(f"HTTP {response.status}")
                        return
                    pending = b""
                    # Whole chunks, one clock reading each: the client process serves a thousand
                    # streams, so its own parsing must not be what is measured.
                    async for chunk in response.content.iter_any():
                        arrived = time.time()
                        *frames, pending = (pending + chunk).split(b"\n\n")
                        for frame in frames:
                            if b"event: job" in frame:
                                found = UPDATED_AT.search(frame)
                                if found:
                                    received[stamp(found.group(1).decode())].append(arrived)
                            elif b"event: hello" in frame and not released:
                                gate.release()
                                released = True
                                hellos += 1
                                if hellos == n_clients:
                                    all_in.set()
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(type(exc).__name__)
            finally:
                if acquired and not released:
                    gate.release()

        before = server.usage()
        started = time.monotonic()
        tasks = [asyncio.create_task(client()) for _ in range(n_clients)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), timeout=180)
        connect_seconds = time.monotonic() - started
        held = server.usage()
        commits: dict[float, float] = {}
        phase_started, cpu_before = time.monotonic(), server.usage()
        for _ in range(n_events):
            key, acked = await asyncio.to_thread(commit)
            commits[key] = acked
            await asyncio.sleep(interval)
        await asyncio.sleep(3)  # the last fan-out
        phase = time.monotonic() - phase_started
        after = server.usage()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    latencies = [t - commits[key] for key, times in received.items() if key in commits for t in times]
    spreads = [max(times) - min(times) for key, times in received.items() if key in commits]
    delivered = sum(len(times) for key, times in received.items() if key in commits)
    return {
        "clients_requested": n_clients,
        "clients_held": hellos,
        "connect_all_seconds": round(connect_seconds, 2),
        "client_failures": len(failures),
        "commits": len(commits),
        "deliveries": delivered,
        "deliveries_expected": len(commits) * n_clients,
        "commit_to_receipt": summary_ms(latencies),
        "fan_out_spread": summary_ms(spreads),  # first to last client, per commit
        "server": {
            "idle": before,
            "holding_clients": held,
            "after_events": after,
            "cpu_cores_used_during_events": cpu_delta(cpu_before, after, phase),
        },
    }


# ---- polling ---------------------------------------------------------------------------------------
async def bench_polling(
    server: ApiProcess, token: str, job_id: str, commit: Callable[[], tuple[float, float]], n_clients: int,
    n_commits: int, every: float,
) -> dict[str, Any]:  # fmt: skip
    seen: dict[float, list[float]] = defaultdict(list)  # updatedAt -> first-seen times, one per client
    response_times: list[float] = []
    errors: list[str] = []
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Authorization": f"Bearer {token}"}

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def poller() -> None:
            last: float | None = None
            next_at = time.monotonic() + random.uniform(0, every)
            while not stop.is_set():
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                # A timer on a fixed beat that skips the ticks it missed while a poll was slow.
                while next_at <= time.monotonic():
                    next_at += every
                sent = time.monotonic()
                try:
                    async with session.get(f"{server.url}/api/jobs/{job_id}") as response:
                        body = await response.json()
                        if response.status != 200:
                            errors.append(f"HTTP {response.status}")
                            continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(type(exc).__name__)
                    continue
                arrived = time.time()
                response_times.append(time.monotonic() - sent)
                key = stamp(body["updatedAt"])
                if key != last:
                    last = key
                    seen[key].append(arrived)

        tasks = [asyncio.create_task(poller()) for _ in range(n_clients)]
        await asyncio.sleep(every + 1)  # every client has polled once: the steady state
        commits: dict[float, float] = {}
        phase_started, before = time.monotonic(), server.usage()
        polls_before = len(response_times)
        for _ in range(n_commits):
            key, acked = await asyncio.to_thread(commit)
            commits[key] = acked
            await asyncio.sleep(every + 1)  # every client polls at least once per commit
        phase = time.monotonic() - phase_started
        after = server.usage()
        polls = len(response_times) - polls_before
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    latencies = [t - commits[key] for key, times in seen.items() if key in commits for t in times]
    return {
        "clients": n_clients,
        "poll_every_seconds": every,
        "commits": len(commits),
        "first_sightings": len(latencies),
        "first_sightings_expected": len(commits) * n_clients,
        "commit_to_first_poll_that_sees_it": summary_ms(latencies),
        "poll_response_time": summary_ms(response_times),
        "requests_per_second": round(polls / phase, 1),
        "errors": len(errors),
        "server": {"during_polling": after, "cpu_cores_used": cpu_delta(before, after, phase)},
    }


# ---- the run ---------------------------------------------------------------------------------------
def run(
    n_clients: int, n_events: int, interval: float, n_pollers: list[int], n_commits: int, every: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        firestore = emu.start("firestore", project=PROJECT, log_dir=Path(tmp))
        try:
            settings = Settings(
                google_cloud_project=PROJECT,
                firestore_emulator_host=firestore.host,
                collection_prefix=f"bench{uuid.uuid4().hex[:6]}_",
                metrics_exporter="none",
            )
            clients = Clients(settings)
            rt = Runtime(settings, clients)
            job, _ = rt.repo.create_job(
                JobCreate(
                    pipeline="video",
                    account_id="acc-bench",
                    scenario_id="sse",
                    source_id="one",
                    user_id=OWNER,
                )
            )

            def commit() -> tuple[float, float]:
                """One heartbeat (a read and a conditional write that move updatedAt): its key and when it was acked."""
                moved = rt.repo.heartbeat(job.job_id)
                return stamp(moved.updated_at), time.time()

            token = mint_token(settings, OWNER, "user", ttl_seconds=3600)
            most = max(n_clients, *n_pollers)
            server = ApiProcess.start(
                settings, threads=most + 32, max_streams=most + 16, log=Path(tmp) / "api.log"
            )
            try:
                sse = asyncio.run(bench_sse(server, token, commit, n_clients, n_events, interval))
                # A stream whose client left holds its thread (and a gunicorn connection slot)
                # until the next heartbeat finds the socket closed.
                time.sleep(settings.sse_heartbeat_seconds + 2)
                polling = [
                    asyncio.run(bench_polling(server, token, job.job_id, commit, n, n_commits, every))
                    for n in n_pollers
                ]
            finally:
                exit_code = server.stop()
            clients.close()
        finally:
            emu.stop(firestore)
    return {
        "benchmark": "sse_vs_polling",
        "serving": f"functions-framework (gunicorn gthread, 1 worker, THREADS={most + 32})",
        "cpus": os.cpu_count(),
        "sse": sse,
        "polling": polling,
        "server_exit_code_after_sigterm": exit_code,
    }


@click.command()
@click.option("--clients", "n_clients", default=1000, show_default=True, help="SSE clients held at once.")
@click.option("--events", "n_events", default=30, show_default=True, help="Commits timed over SSE.")
@click.option("--interval", default=0.5, show_default=True, help="Seconds between SSE commits.")
@click.option(
    "--poll-clients",
    "n_pollers",
    default="100,1000",
    show_default=True,
    help="Polling runs, comma-separated client counts: one the machine can serve, and the SSE count.",
)
@click.option("--commits", "n_commits", default=5, show_default=True, help="Commits timed while polling.")
@click.option(
    "--poll-every", "every", default=3.0, show_default=True, help="Seconds between polls (seed 002)."
)
def main(
    n_clients: int, n_events: int, interval: float, n_pollers: str, n_commits: int, every: float
) -> None:
    counts = [int(part) for part in n_pollers.split(",") if part.strip()]
    click.echo(json.dumps(run(n_clients, n_events, interval, counts, n_commits, every), indent=2))


if __name__ == "__main__":
    main()
