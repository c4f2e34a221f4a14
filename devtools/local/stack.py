"""The whole system on one machine: emulators, the fake outside world, every entry point as its own
functions-framework process (as deployed), Cloud Scheduler's ticks, and demo traffic.

    python -m devtools.local.stack                 # until Ctrl-C
    python -m devtools.local.stack --duration 60   # bounded, e.g. a smoke run

Each process gets the environment Google Cloud would give it (the same Settings fields), so the
entry points run exactly the code that is deployed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import requests

from devtools.local.demo import DemoTraffic
from infra import emulators as emu
from infra.bootstrap import bootstrap
from infra.topology import RetryPolicy
from services.auth.login_codes import issue_login_code
from services.auth.principal import Role
from services.clients import Clients
from services.jobs.repository import JobRepository
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "jobtrail-local"

# module in functions/ -> functions-framework target
ENTRY_POINTS = {
    "webhook_intake": "webhook_intake",
    "pipeline_worker": "pipeline_worker",
    "dlq_analyzer": "dlq_analyzer",
    "suno_callback": "suno_callback",
    "suno_poller": "poll_music_jobs",
    "sweeper": "sweep_stale_jobs",
    "api": "api",
    "alert_relay": "alert_relay",
}
# Cloud Scheduler jobs (terraform/modules/scheduler), every minute there; faster locally.
SCHEDULED = ("sweeper", "suno_poller")


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@dataclass
class LocalStack:
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    emulators: dict[str, emu.Emulator] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def url(self, name: str) -> str:
        return self.processes[name].url

    # ---- start -------------------------------------------------------------------------------
    def start(self, *, extra_env: dict[str, str] | None = None, scheduler_interval: float = 5.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in ("firestore", "pubsub"):
            self.emulators[name] = emu.start(name, project=PROJECT, log_dir=self.log_dir)
        world_port = emu.free_port()
        world_url = f"http://127.0.0.1:{world_port}"
        ports = {name: emu.free_port() for name in ENTRY_POINTS}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        self.env = {
            **os.environ,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "FIRESTORE_EMULATOR_HOST": self.emulators["firestore"].host,
            "PUBSUB_EMULATOR_HOST": self.emulators["pubsub"].host,
            "VIDEO_SOURCE_URL": f"{world_url}/video",
            "PROCESSOR_URL": f"{world_url}/processor",
            "INSTAGRAM_URL": f"{world_url}/instagram",
            "SUNO_API_URL": f"{world_url}/suno",
            "TELEGRAM_API_URL": f"{world_url}/telegram",
            "PUBLIC_BASE_URL": urls["suno_callback"],
            "STALE_AFTER_SECONDS": "60",
            "TRACE_EXPORTER": "none",
            "METRICS_EXPORTER": "prometheus",
            "PYTHONUNBUFFERED": "1",
            # The job page's live log lines: the API reads the other processes' JSON logs here.
            "JOB_LOG_SOURCE": "files",
            "JOB_LOG_DIR": str(self.log_dir.resolve()),
            # functions-framework's thread count; each open dashboard stream holds one (api).
            "THREADS": "64",
            **(extra_env or {}),
        }
        self._spawn(
            "fake_world", [sys.executable, "-m", "devtools.fakes.world", "--port", str(world_port)], world_url
        )
        for module, target in ENTRY_POINTS.items():
            self._spawn(
                module,
                [
                    sys.executable,
                    "-m",
                    "functions_framework",
                    "--source",
                    str(ROOT / "functions" / f"{module}.py"),
                    "--target",
                    target,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports[module]),
                ],
                urls[module],
            )
        for process in self.processes.values():
            self._wait_ready(process)
        os.environ["PUBSUB_EMULATOR_HOST"] = self.env["PUBSUB_EMULATOR_HOST"]
        bootstrap(
            PROJECT,
            push_endpoints={"pipeline_worker": urls["pipeline_worker"], "dlq_analyzer": urls["dlq_analyzer"]},
            backoff=RetryPolicy(minimum_backoff="2s", maximum_backoff="10s"),
        )
        threading.Thread(
            target=self._scheduler, args=(scheduler_interval,), daemon=True, name="scheduler"
        ).start()

    def _spawn(self, name: str, argv: list[str], url: str) -> None:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes[name] = Process(name, proc, url, log)

    @staticmethod
    def _wait_ready(process: Process, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.proc.poll() is not None:
                raise RuntimeError(f"{process.name} exited ({process.proc.returncode}); see {process.log}")
            try:
                requests.get(process.url, timeout=2)
                return
            except requests.RequestException:  # not listening yet, or too busy starting to answer
                time.sleep(0.2)
        raise RuntimeError(f"{process.name} did not answer within {timeout:.0f}s; see {process.log}")

    def _scheduler(self, interval: float) -> None:
        """Cloud Scheduler's part: POST to each scheduled function on a fixed beat."""
        while not self._stop.wait(interval):
            for name in SCHEDULED:
                with contextlib.suppress(requests.RequestException):
                    requests.post(self.url(name), json={}, timeout=30)

    def login_link(self, subject: str, role: str = "admin") -> str:
        """A one-click sign-in link for the dashboard: a one-time code that expires in minutes, in
        the URL's fragment (browsers never send it to a server or a log). Never the token itself."""
        settings = Settings(
            google_cloud_project=PROJECT,
            firestore_emulator_host=self.emulators["firestore"].host,
            pubsub_emulator_host=self.emulators["pubsub"].host,
            metrics_exporter="none",
        )
        clients = Clients(settings)
        try:
            code = issue_login_code(JobRepository(clients.firestore, settings), settings, subject, Role(role))
        finally:
            clients.close()
        return f"{self.url('api')}/#login={code}"

    # ---- stop --------------------------------------------------------------------------------
    def restart(self, name: str) -> None:
        """Kill one entry point's process and start it again on the same port (a crash)."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.proc.pid, signal.SIGKILL)
        process.proc.wait(timeout=10)
        self._spawn(name, list(process.proc.args), process.url)  # type: ignore[arg-type]
        self._wait_ready(self.processes[name])

    def stop(self) -> None:
        self._stop.set()
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.proc.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.proc.pid, signal.SIGKILL)
        for emulator in self.emulators.values():
            emu.stop(emulator)


@contextlib.contextmanager
def running_stack(log_dir: Path, **kwargs: object) -> Iterator[LocalStack]:
    stack = LocalStack(log_dir=log_dir)
    try:
        stack.start(**kwargs)  # type: ignore[arg-type]
        yield stack
    finally:
        stack.stop()


@click.command()
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--demo/--no-demo", default=True, help="Send demo traffic.")
@click.option("--log-dir", type=click.Path(path_type=Path), default=ROOT / ".stack", show_default=True)
def main(duration: float | None, demo: bool, log_dir: Path) -> None:
    with running_stack(log_dir) as stack:
        click.echo(f"dashboard:   {stack.url('api')}/")
        click.echo(f"webhook:     {stack.url('webhook_intake')}")
        click.echo(f"metrics:     {stack.url('pipeline_worker')}/metrics")
        click.echo(f"logs:        {log_dir}/")
        click.echo(f"sign in:     {stack.login_link('demo-admin')}  (admin; one use, within minutes)")
        traffic = DemoTraffic(stack.url) if demo else None
        if traffic:
            traffic.start()
        deadline = time.monotonic() + duration if duration else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            if traffic:
                traffic.stop()
                click.echo(traffic.summary())


if __name__ == "__main__":
    main()
