"""Telemetry leaves a Cloud Run instance under both CPU models, with the real server
(functions-framework's gunicorn): before each response where the CPU is request-only, and within
the SIGTERM grace where it is always allocated. Spans go to stderr (TRACE_EXPORTER=console, a batch
exporter that on its own waits 5 s), so what the process printed shows what was exported when."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from infra.emulators import free_port

REPO = Path(__file__).resolve().parents[2]
SPAN = '"name": "POST suno_callback"'


def start_callback(cpu_allocation: str, stderr: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    target = ["--target", "suno_callback", "--source", "functions/suno_callback.py"]
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("functions-framework")),
            *target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env={
            "PATH": os.environ["PATH"],
            "ENVIRONMENT": "test",
            "TRACE_EXPORTER": "console",
            "METRICS_EXPORTER": "none",
            "CPU_ALLOCATION": cpu_allocation,
        },
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/health", timeout=2)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("functions-framework did not start")


def test_request_only_cpu_exports_the_span_before_the_response(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    proc, url = start_callback("request", stderr)
    try:
        assert requests.post(url, json={}, timeout=10).status_code == 401  # no token: a real request
        # No waiting: with the CPU throttled after the response, it had to be exported before it.
        assert SPAN in stderr.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_sigterm_exports_what_is_left_within_cloud_runs_grace(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    proc, url = start_callback("always", stderr)
    try:
        assert requests.post(url, json={}, timeout=10).status_code == 401
        os.kill(proc.pid, signal.SIGTERM)  # what Cloud Run sends the container's first process
        proc.wait(timeout=10)  # then SIGKILL, 10 s later
        assert SPAN in stderr.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
