"""runOnce latency (seed 002: the 202 within 2 s) with Suno's credit endpoint quick, slow and down.

    python -m bench.run_once [--requests 200] [--clients 4] [--suno-latency-ms 5000]

The API app on loopback, Firestore and Pub/Sub emulators, the fake Suno. Each case runs on a fresh
runtime (so the credit gauge starts empty) in the same process; compare the cases with each other,
not with absolute targets: the machine is shared. Prints one JSON object.
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import requests
from pydantic import SecretStr

from bench.pipeline import percentile
from devtools.fakes.world import FakeWorld
from devtools.local.serve import BackgroundServer
from infra import emulators as emu
from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import mint_token
from services.clients import Clients
from services.runtime import Runtime
from services.settings import Settings

PROJECT = "jobtrail-bench-runonce"


class _LateApp:
    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


def bench_case(settings: Settings, clients: Clients, n_requests: int, n_clients: int) -> dict[str, Any]:
    late = _LateApp()
    with BackgroundServer(late) as api:
        rt = Runtime(settings.model_copy(update={"public_base_url": api.url}), clients)
        late.app = create_app(rt)
        headers = {"Authorization": f"Bearer {mint_token(rt.settings, 'bench-user', 'user')}"}

        def one(i: int) -> float:
            started = time.perf_counter()
            response = requests.post(
                f"{api.url}/api/music-clips/channels/ch{i}/runOnce", json={}, headers=headers, timeout=30
            )
            elapsed = time.perf_counter() - started
            if response.status_code != 202:
                raise RuntimeError(f"runOnce answered {response.status_code}: {response.text[:200]}")
            return elapsed

        with ThreadPoolExecutor(max_workers=n_clients) as pool:
            latencies = list(pool.map(one, range(n_requests)))
        rt.suno.close()
    return {
        "requests": n_requests,
        "latency_ms_p50": round(percentile(latencies, 50) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 99) * 1000, 1),
        "latency_ms_max": round(max(latencies) * 1000, 1),
    }


def run(n_requests: int, n_clients: int, suno_latency_ms: int) -> dict[str, Any]:
    cases = {
        "quick": {"latency_ms": 0},
        "slow": {"latency_ms": suno_latency_ms},
        "down": {"fail_next_n": 1_000_000},
    }
    results: dict[str, Any] = {"clients": n_clients, "suno_latency_ms": suno_latency_ms}
    with (
        tempfile.TemporaryDirectory() as logs,
        emu.running(project=PROJECT, log_dir=Path(logs)) as started,
        FakeWorld() as world,
    ):
        settings = Settings(
            google_cloud_project=PROJECT,
            firestore_emulator_host=started["firestore"].host,
            pubsub_emulator_host=started["pubsub"].host,
            metrics_exporter="none",
            suno_api_url=f"{world.url}/suno",
            suno_credits_per_generation=1,
            jwt_secret=SecretStr("bench-run-once-secret-of-enough-length"),
        )
        clients = Clients(settings)
        try:
            clients.point_at_emulators()
            bootstrap(PROJECT)  # pull subscriptions: runOnce publishes, nothing consumes
            # Process-wide clients (Firestore channel, Pub/Sub publisher) connect on first use: not
            # what any case measures.
            bench_case(settings, clients, n_clients, n_clients)
            for name, suno in cases.items():
                world.reset()
                world.configure(suno={**suno, "credits": 1_000_000})
                results[name] = bench_case(settings, clients, n_requests, n_clients)
        finally:
            clients.close()
    results["slow_to_quick_p99_ratio"] = round(
        results["slow"]["latency_ms_p99"] / max(results["quick"]["latency_ms_p99"], 0.1), 2
    )
    return results


@click.command()
@click.option("--requests", "n_requests", default=200, show_default=True)
@click.option("--clients", "n_clients", default=4, show_default=True)
@click.option("--suno-latency-ms", default=5000, show_default=True)
def main(n_requests: int, n_clients: int, suno_latency_ms: int) -> None:
    click.echo(json.dumps(run(n_requests, n_clients, suno_latency_ms), indent=2))


if __name__ == "__main__":
    main()
