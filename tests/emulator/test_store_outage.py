"""Firestore down under a running API and webhook intake: every request that needs it gets a clear
503 STORE_UNAVAILABLE with Retry-After within the configured bound, /health still answers, and the
same requests succeed once Firestore is back. The test freezes its own Firestore emulator, so the
session's emulator, which other tests share, never stops."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from devtools.local.serve import BackgroundServer, function_app
from infra import emulators as emu
from services.api import create_app
from services.auth import Role, mint_token
from services.clients import Clients
from services.intake import SIGNATURE_HEADER, handle_webhook, sign
from services.jobs.models import JobCreate
from services.jobs.repository import JobRepository
from services.runtime import Runtime
from services.settings import Settings
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator

CALL_BOUND_SECONDS = 3.0


@dataclass
class Outage:
    firestore: emu.Emulator
    rt: Runtime
    api_url: str
    intake_url: str
    job_id: str


@pytest.fixture
def outage(settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    firestore = emu.start("firestore", project=settings.google_cloud_project, log_dir=tmp_path)
    # The client reads the variable; monkeypatch puts the session emulator's back afterwards.
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore.host)
    own = settings.model_copy(update={"firestore_emulator_host": firestore.host})
    # The job is written with the library's usual patience (a fresh emulator is slow to answer
    # first); only the API under test has the short bound.
    setup = Clients(own)
    bounded = own.model_copy(update={"firestore_call_timeout_seconds": CALL_BOUND_SECONDS})
    clients = Clients(bounded)
    try:
        rt = Runtime(bounded, clients)
        job, _ = JobRepository(setup.firestore, own).create_job(
            JobCreate(
                pipeline="video",
                account_id="acc-7",
                scenario_id="scn-2",
                source_id="src-outage",
                user_id="user-1",
                input={"videoUrl": "https://videos.example/outage.mp4"},
            )
        )
        with (
            BackgroundServer(create_app(rt)) as api,
            BackgroundServer(function_app(handle_webhook, rt, "intake")) as intake,
        ):
            yield Outage(firestore, rt, api.url, intake.url, job.job_id)
    finally:
        setup.close()
        clients.close()
        emu.stop(firestore)


def webhook(outage: Outage) -> requests.Response:
    body = json.dumps(
        {
            "accountId": "acc-7",
            "scenarioId": "scn-2",
            "sourceId": f"src-{uuid.uuid4().hex[:6]}",
            "userId": "user-1",
            "deliveryId": uuid.uuid4().hex,
            "videoUrl": "https://videos.example/clip.mp4",
            "caption": "hello",
        }
    ).encode()
    secret = outage.rt.settings.webhook_hmac_secret.get_secret_value()
    return requests.post(
        outage.intake_url,
        data=body,
        timeout=30,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)},
    )


def assert_store_unavailable(response: requests.Response, outage: Outage) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["error"] == "STORE_UNAVAILABLE" and body["ok"] is False
    assert "Firestore" in body["message"] and "try again" in body["message"]
    # Nothing about where or what: no host, port, collection or library detail.
    assert (
        outage.firestore.host not in response.text
        and outage.rt.settings.collection_prefix not in response.text
    )
    assert "Retry" + "Error" not in response.text and "grpc" not in response.text.lower()


def test_a_frozen_firestore_gets_503_store_unavailable_then_200_once_it_is_back(outage: Outage):
    token = mint_token(outage.rt.settings, "ops", Role.ADMIN)
    auth = {"Authorization": f"Bearer {token}"}
    job_url = f"{outage.api_url}/api/jobs/{outage.job_id}"

    def answered() -> bool:
        return requests.get(job_url, headers=auth, timeout=30).status_code == 200

    wait_for(answered, what="the API to read the job")  # its first call opens the connection

    emu.freeze(outage.firestore)
    try:
        # Reads: one document, and a query.
        assert_store_unavailable(requests.get(job_url, headers=auth, timeout=30), outage)
        assert_store_unavailable(requests.get(f"{outage.api_url}/api/jobs", headers=auth, timeout=30), outage)
        # A write: cancelling the queued job.
        assert_store_unavailable(requests.delete(job_url, headers=auth, timeout=30), outage)
        # The webhook intake is another entry point; it maps the outage the same way.
        assert_store_unavailable(webhook(outage), outage)
        # Cloud Run's probe touches no dependency: the instance is not killed for an outage.
        health = requests.get(f"{outage.api_url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        emu.thaw(outage.firestore)

    wait_for(answered, what="the API to read the job again once Firestore is back")
    cancelled = requests.delete(job_url, headers=auth, timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
