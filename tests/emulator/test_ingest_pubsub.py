"""The ingest-reports topic on the Pub/Sub emulator: a service that publishes instead of calling
HTTP (jobtrail_client's PubSubTransport) walks its job through its stages; a report that overtakes
its job's create is nacked until the create lands; a message that can never apply is nacked (for
ingest-reports-dlq) and writes nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devtools.local.serve import BackgroundServer, function_app
from infra.bootstrap import bootstrap
from jobtrail_client import PubSubTransport, Tracker
from services.ingest.push import handle_ingest_push
from services.runtime import Runtime
from services.settings import Settings
from tests.emulator.conftest import TEST_BACKOFF
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    return Runtime(settings, clients)


@pytest.fixture
def topic(rt: Runtime) -> Iterator[str]:
    with BackgroundServer(function_app(handle_ingest_push, rt, "ingest")) as ingest:
        bootstrap(
            rt.settings.google_cloud_project,
            prefix=rt.settings.topic_prefix,
            backoff=TEST_BACKOFF,
            push_endpoints={"ingest_reports": ingest.url},
        )
        yield rt.clients.topic_path("ingest-reports")


def find_job(rt: Runtime, key: str):
    return rt.repo.find_by_idempotency_key(f"ingest:clip_render:{key}")


def test_a_publishing_service_walks_its_job_through_its_stages(rt, topic):
    tracker = Tracker(PubSubTransport(topic, "clip-render"), pipeline="clip_render")
    job = tracker.start_job(
        "pub-1", account_id="acc-1", scenario_id="scn-1", source_id="pub-1", user_id="bob"
    )
    with tracker.stage(job, "rendering", done="rendered"):
        pass
    tracker.reached(job, "uploading")
    tracker.succeeded(job, {"url": "gs://clips/pub-1.mp4"})
    assert tracker.close(30)

    # Pub/Sub does not keep order: reports that come before the create are redelivered until it lands.
    done = wait_for(
        lambda: (j := find_job(rt, "pub-1")) is not None and j.status == "succeeded" and j,
        timeout=90,
        what="the published job to succeed",
    )
    assert done.trace_id == "acc-1-scn-1-pub-1" and done.result == {"url": "gs://clips/pub-1.mp4"}
    stages = [e.to_stage for e in rt.repo.list_events(done.job_id)]
    assert stages[0] == "requested" and stages[-1] == "delivered"
    assert {e.actor for e in rt.repo.list_events(done.job_id)} == {"service:clip-render"}


def pushed(data: bytes, message_id: str = "m1") -> dict[str, Any]:
    """What Pub/Sub POSTs to the ingest-reports push endpoint."""
    return {
        "message": {"data": base64.b64encode(data).decode(), "attributes": {}, "messageId": message_id},
        "subscription": "projects/x/subscriptions/ingest-reports-push",
    }


def create_message(service: str, key: str) -> bytes:
    create = {
        "pipeline": "clip_render",
        "idempotencyKey": key,
        "accountId": "acc-1",
        "scenarioId": "scn-1",
        "sourceId": key,
        "userId": "eve",
    }
    return json.dumps({"v": 1, "service": service, "create": create}).encode()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (create_message("other-team", "stolen"), 403),  # not a reporter of clip_render
        (b"not json", 400),
        (json.dumps({"v": 1, "service": "clip-render"}).encode(), 400),  # neither create nor report
        (
            json.dumps(
                {"v": 9, "service": "clip-render", "report": {"job": {"jobId": "j"}, "type": "heartbeat"}}
            ).encode(),
            400,
        ),
    ],
)
def test_a_message_that_can_never_apply_is_nacked_for_the_dead_letter_topic_and_writes_nothing(
    rt, data, status
):
    """Non-2xx is a nack: after max_delivery_attempts Pub/Sub moves it to ingest-reports-dlq
    (infra/topology.yaml), whose pull subscription a person reads."""
    with BackgroundServer(function_app(handle_ingest_push, rt, "ingest")) as ingest:
        answer = requests.post(ingest.url, json=pushed(data), timeout=10)
    assert answer.status_code == status and answer.json()["error"] in ("FORBIDDEN", "INVALID_INPUT")
    assert rt.repo.count_jobs() == 0


def test_a_report_before_its_create_is_nacked_and_a_stale_one_is_acked(rt):
    report = {
        "job": {"pipeline": "clip_render", "idempotencyKey": "late"},
        "type": "stage",
        "stage": "rendered",
    }
    report_message = json.dumps({"v": 1, "service": "clip-render", "report": report}).encode()
    backwards = json.dumps(
        {"v": 1, "service": "clip-render", "report": {**report, "stage": "rendering"}}
    ).encode()
    with BackgroundServer(function_app(handle_ingest_push, rt, "ingest")) as ingest:
        early = requests.post(ingest.url, json=pushed(report_message), timeout=10)
        assert early.status_code == 404  # redelivered until the create lands
        created = requests.post(ingest.url, json=pushed(create_message("clip-render", "late")), timeout=10)
        assert created.status_code == 200 and created.json()["created"] is True
        assert requests.post(ingest.url, json=pushed(report_message), timeout=10).json()["applied"] is True
        stale = requests.post(ingest.url, json=pushed(backwards), timeout=10)
    # No redelivery could make a move backwards legal: acked, logged, nothing written.
    assert stale.status_code == 200 and stale.json()["error"] == "ILLEGAL_TRANSITION"
    job = find_job(rt, "late")
    assert job is not None and job.stage == "rendered" and len(rt.repo.list_events(job.job_id)) == 2
