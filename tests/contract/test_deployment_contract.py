"""The deployment contract, end to end: every entry point starts, in cloud mode, with exactly the
environment Terraform builds for its Cloud Run service, and serves; without any one of those
variables it refuses to start and names it; with the repository's defaults it refuses too.

What stands in for Google here, and only that: the secrets' values (random, as Secret Manager would
hold them), Firestore and Pub/Sub (the emulators, via *_EMULATOR_HOST), Cloud Run's own K_SERVICE
and PORT, and the telemetry exporters (TRACE_EXPORTER / METRICS_EXPORTER gcp would call Google's
APIs, which cannot be reached here: spans go to stderr and metrics to /metrics instead).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import requests

from infra.emulators import free_port
from services.deployment import require_deployment
from services.intake import SIGNATURE_HEADER, sign
from services.messages import JobMessage
from services.settings import Settings
from tests.contract.terraform_env import REPO, ServiceEnv

FUNCTIONS_FRAMEWORK = str(Path(sys.executable).with_name("functions-framework"))
# Cloud Run's K_SERVICE alone makes a process cloud-mode, so ENVIRONMENT is the one variable whose
# absence changes nothing (test_k_service_alone_means_cloud holds that).
IMPLIED_BY_CLOUD_RUN = {"ENVIRONMENT"}


def secret_values(service: ServiceEnv) -> dict[str, str]:
    """What Secret Manager would fill in: fresh random values, well-formed where a shape is needed."""
    values = {name: secrets.token_urlsafe(48) for name in service.secrets}
    if "SLACK_WEBHOOK_URL" in values:
        values["SLACK_WEBHOOK_URL"] = f"https://hooks.slack.com/services/T0/B0/{secrets.token_hex(12)}"
    return values


def cloud_environment(service: ServiceEnv, emulator_hosts: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        **service.values,
        **secret_values(service),
        **emulator_hosts,
        "K_SERVICE": service.service,
        "K_REVISION": f"{service.service}-00001-abc",
        "TRACE_EXPORTER": "console",
        "METRICS_EXPORTER": "prometheus",
    }


@contextmanager
def started(service: ServiceEnv, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``functions-framework`` serving the entry point as Cloud Run runs it; stopped with its group."""
    port = free_port()
    command = [FUNCTIONS_FRAMEWORK, "--target", service.entry_point, "--source", service.source]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float = 90.0) -> requests.Response:
    """Cloud Run's startup probe: GET /health until it answers (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before serving:\n{err.decode()[-3000:]}")
        try:
            response = requests.get(f"{url}/health", timeout=5)
            if response.status_code == 200:
                return response
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no answer on /health within {timeout:.0f}s")


def push(job_id: str, subscription: str) -> dict[str, object]:
    message = JobMessage(job_id=job_id, pipeline="video", trace_id="acc-scn-src")
    return {
        "message": {
            "data": base64.b64encode(message.encode()).decode(),
            "attributes": message.attributes(),
            "messageId": uuid.uuid4().hex,
        },
        "subscription": f"projects/p/subscriptions/{subscription}",
    }


def one_real_request(entry_point: str, url: str, env: dict[str, str]) -> requests.Response:
    """A request each entry point serves without any outside service (Firestore and Pub/Sub only),
    with the status it must answer."""
    if entry_point == "webhook_intake":
        body = json.dumps(
            {
                "accountId": "acc",
                "scenarioId": "contract",
                "sourceId": uuid.uuid4().hex[:8],
                "userId": "alice",
                "deliveryId": uuid.uuid4().hex,
                "videoUrl": "https://videos.example.com/clip.mp4",
            }
        ).encode()
        signature = sign(env["WEBHOOK_HMAC_SECRET"], body)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        return requests.post(url, data=body, headers=headers, timeout=30)
    if entry_point in ("pipeline_worker", "dlq_analyzer"):
        # A message naming a job that does not exist: looked up in Firestore, acknowledged.
        subscription = "video-worker" if entry_point == "pipeline_worker" else "video-dlq-analyzer"
        return requests.post(url, json=push(f"job_{uuid.uuid4().hex}", subscription), timeout=30)
    if entry_point in ("sweep_stale_jobs", "poll_music_jobs"):
        return requests.post(url, timeout=60)
    if entry_point == "api":
        from services.auth.credentials import mint_token

        with mock.patch.dict(os.environ, env, clear=True):
            token = mint_token(Settings(), "alice")
        return requests.get(f"{url}/api/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    # suno_callback, alert_relay: a caller without the token the deployment's secret defines.
    return requests.post(url, json={}, timeout=30)


EXPECTED_STATUS = {
    "webhook_intake": 202,
    "pipeline_worker": 200,
    "dlq_analyzer": 200,
    "sweep_stale_jobs": 200,
    "poll_music_jobs": 200,
    "api": 200,
    "suno_callback": 401,
    "alert_relay": 401,
}


def test_terraform_renders_every_entry_point(terraform_services: dict[str, ServiceEnv]) -> None:
    assert sorted(terraform_services) == sorted(EXPECTED_STATUS)
    for service in terraform_services.values():
        assert service.values["ENVIRONMENT"] == "cloud"


@pytest.mark.parametrize("entry_point", sorted(EXPECTED_STATUS))
def test_each_service_starts_with_the_environment_terraform_builds_and_serves(
    entry_point: str, terraform_services: dict[str, ServiceEnv], emulator_hosts: dict[str, str]
) -> None:
    service = terraform_services[entry_point]
    env = cloud_environment(service, emulator_hosts)
    with started(service, env) as (proc, url):
        health = wait_healthy(proc, url)
        assert health.json()["status"] == "ok"
        response = one_real_request(entry_point, url, env)
        assert response.status_code == EXPECTED_STATUS[entry_point], response.text
        assert proc.poll() is None


def test_a_start_without_any_one_of_its_variables_fails_naming_it(
    terraform_services: dict[str, ServiceEnv],
) -> None:
    """Every variable Terraform gives a service is one it cannot start without (checked at import,
    the same call the entry point makes)."""
    checked = 0
    for service in terraform_services.values():
        full = cloud_environment(service, {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"})
        for variable in sorted((set(service.values) | set(service.secrets)) - IMPLIED_BY_CLOUD_RUN):
            env = {k: v for k, v in full.items() if k != variable}
            with mock.patch.dict(os.environ, env, clear=True), pytest.raises(SystemExit) as refused:
                require_deployment(service.entry_point, Settings())
            message = str(refused.value)
            assert f"{variable} " in message, f"{service.entry_point} without {variable}: {message}"
            for secret in service.secrets:
                assert full[secret] not in message  # a secret's value never reaches the error
            checked += 1
        with mock.patch.dict(os.environ, full, clear=True):
            require_deployment(service.entry_point, Settings())  # and with all of them, it starts
    assert checked > 80


def test_k_service_alone_means_cloud(terraform_services: dict[str, ServiceEnv]) -> None:
    service = terraform_services["webhook_intake"]
    env = {k: v for k, v in cloud_environment(service, {}).items() if k not in IMPLIED_BY_CLOUD_RUN}
    env["WEBHOOK_HMAC_SECRET"] = Settings.model_fields["webhook_hmac_secret"].default.get_secret_value()
    with mock.patch.dict(os.environ, env, clear=True), pytest.raises(SystemExit, match="WEBHOOK_HMAC_SECRET"):
        require_deployment("webhook_intake", Settings())


def test_a_real_start_without_a_secret_exits_naming_it(
    terraform_services: dict[str, ServiceEnv], emulator_hosts: dict[str, str]
) -> None:
    service = terraform_services["webhook_intake"]
    env = cloud_environment(service, emulator_hosts)
    del env["WEBHOOK_HMAC_SECRET"]
    with started(service, env) as (proc, _):
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "WEBHOOK_HMAC_SECRET holds the development default" in err.decode()


@pytest.mark.parametrize(
    ("entry_point", "named"),
    [("api", ["JWT_SECRET", "SUNO_API_URL"]), ("webhook_intake", ["WEBHOOK_HMAC_SECRET"])],
)
def test_a_cloud_start_with_the_repository_defaults_exits(
    entry_point: str, named: list[str], terraform_services: dict[str, ServiceEnv]
) -> None:
    service = terraform_services[entry_point]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "K_SERVICE": service.service}
    with started(service, env) as (proc, _):
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    for variable in named:
        assert variable in err.decode()


def test_the_operator_check_names_every_problem_of_the_defaults() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.deployment", "check"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "ENVIRONMENT": "cloud"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    for variable in ("JWT_SECRET", "WEBHOOK_HMAC_SECRET", "SUNO_API_URL"):
        assert variable in done.stdout
