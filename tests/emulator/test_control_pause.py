"""Pausing a queue on the emulators: the push endpoint is detached, so Pub/Sub delivers nothing (no
nack counts toward dead-lettering) until resume re-attaches it; then every job runs, once.

Same pipeline as the ``stack`` fixture, but the worker counts the deliveries it receives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import flask
import pytest
import requests
from google.cloud import pubsub_v1

from devtools.local.serve import BackgroundServer, function_app
from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import mint_token
from services.intake import handle_webhook
from services.jobs.repository import QuerySpec
from services.pipelines.spec import JobStatus
from services.runtime import Runtime
from services.worker.http import handle_dead_letter, handle_push
from tests.emulator.conftest import TEST_BACKOFF
from tests.emulator.test_video_pipeline import finished, post_webhook, push_body, webhook_body
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator

QUEUE = "video-worker"
# Longer than the test backoff's whole retry budget (5 attempts, 1-2 s apart): had a paused queue
# kept delivering, the messages would have been nacked into the dead-letter topic by now.
PAUSE_WINDOW_SECONDS = 8


@dataclass
class CountedStack:
    rt: Runtime
    intake_url: str
    worker_url: str
    deliveries: list[str]


@pytest.fixture
def counted_stack(rt: Runtime) -> Iterator[CountedStack]:
    deliveries: list[str] = []
    lock = threading.Lock()

    def counting_push(runtime: Runtime, request: flask.Request) -> flask.Response:
        response = handle_push(runtime, request)
        with lock:
            deliveries.append(response.get_json()["reason"])
        return response

    with (
        BackgroundServer(function_app(counting_push, rt, "worker")) as worker,
        BackgroundServer(function_app(handle_dead_letter, rt, "dlq")) as dlq,
        BackgroundServer(function_app(handle_webhook, rt, "intake")) as intake,
    ):
        bootstrap(
            rt.settings.google_cloud_project,
            prefix=rt.settings.topic_prefix,
            backoff=TEST_BACKOFF,
            push_endpoints={"pipeline_worker": worker.url, "dlq_analyzer": dlq.url},
        )
        yield CountedStack(rt=rt, intake_url=intake.url, worker_url=worker.url, deliveries=deliveries)


def push_endpoint(rt: Runtime, name: str) -> str:
    client = pubsub_v1.SubscriberClient()
    try:
        path = client.subscription_path(rt.settings.google_cloud_project, f"{rt.settings.topic_prefix}{name}")
        return str(client.get_subscription(request={"subscription": path}).push_config.push_endpoint)
    finally:
        client.close()


def admin(rt: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, 'ops', 'admin')}"}


def test_a_paused_queue_processes_nothing_until_resumed_then_everything(counted_stack, world):
    rt = counted_stack.rt
    client = create_app(rt).test_client()
    paused = client.post(f"/api/admin/queues/{QUEUE}/pause", headers=admin(rt))
    assert paused.status_code == 200 and paused.get_json()["paused"] is True
    assert push_endpoint(rt, QUEUE) == ""  # a pull subscription now: Pub/Sub holds the messages
    assert rt.repo.get_queue(QUEUE).push_config == {
        "push_endpoint": counted_stack.worker_url,
        "attributes": {},
    }

    job_ids = [post_webhook(counted_stack, webhook_body()).json()["jobId"] for _ in range(3)]
    time.sleep(PAUSE_WINDOW_SECONDS)  # an observation window: nothing may happen in it
    assert counted_stack.deliveries == []
    assert [rt.repo.get_job(j).stage for j in job_ids] == ["received"] * 3
    assert world.stats()["calls"] == {}
    listed = client.get("/api/admin/queues", headers=admin(rt)).get_json()["queues"]
    assert {q["name"]: q["paused"] for q in listed}[QUEUE] is True

    resumed = client.post(f"/api/admin/queues/{QUEUE}/resume", headers=admin(rt))
    assert resumed.status_code == 200 and resumed.get_json()["paused"] is False
    assert push_endpoint(rt, QUEUE) == counted_stack.worker_url
    assert rt.repo.get_queue(QUEUE).push_config is None

    jobs = [wait_for(finished(rt.repo, j), timeout=60, what=f"job {j} to finish") for j in job_ids]
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs), [(j.stage, j.error) for j in jobs]
    assert all(len(rt.repo.list_executions(j)) == 1 for j in job_ids)
    # A delivery is counted when the worker answers, just after the job's last commit.
    wait_for(lambda: len(counted_stack.deliveries) >= 3, what="the last delivery to be answered")
    assert counted_stack.deliveries == ["DONE"] * 3  # one delivery each: none was spent while paused
    actions = [(r.action, r.result) for r in rt.repo.find_audit(QuerySpec())]
    assert sorted(actions) == [
        ("queue.pause", "ok; push endpoint detached"),
        ("queue.resume", "ok; push endpoint re-attached"),
    ]


def test_pause_and_resume_are_idempotent(counted_stack):
    rt = counted_stack.rt
    client = create_app(rt).test_client()
    for _ in range(2):
        assert client.post(f"/api/admin/queues/{QUEUE}/pause", headers=admin(rt)).status_code == 200
    # the second pause found nothing attached and kept the endpoint saved by the first
    assert rt.repo.get_queue(QUEUE).push_config["push_endpoint"] == counted_stack.worker_url
    for _ in range(2):
        assert client.post(f"/api/admin/queues/{QUEUE}/resume", headers=admin(rt)).status_code == 200
    assert push_endpoint(rt, QUEUE) == counted_stack.worker_url and not rt.repo.get_queue(QUEUE).paused


def test_the_worker_still_refuses_work_while_the_flag_is_set(counted_stack, world):
    """The safety net: a delivery that arrives anyway (already in flight, or a push config put back
    by someone else) is nacked without work."""
    rt = counted_stack.rt
    rt.repo.set_queue_paused(QUEUE, True, actor="test")
    job_id = post_webhook(counted_stack, webhook_body()).json()["jobId"]
    envelope = push_body(rt.repo.get_job(job_id), "direct-1", f"{rt.settings.topic_prefix}{QUEUE}")
    response = requests.post(counted_stack.worker_url, json=envelope, timeout=10)
    assert response.status_code == 503 and response.json()["reason"] == "QUEUE_PAUSED"
    assert rt.repo.list_executions(job_id) == [] and world.stats()["calls"] == {}


def test_only_admins_pause_and_unknown_queues_are_404(counted_stack):
    rt = counted_stack.rt
    client = create_app(rt).test_client()
    user = {"Authorization": f"Bearer {mint_token(rt.settings, 'alice')}"}
    assert client.post(f"/api/admin/queues/{QUEUE}/pause", headers=user).status_code == 403
    assert client.post("/api/admin/queues/nope/pause", headers=admin(rt)).status_code == 404
    assert not rt.repo.get_queue(QUEUE).paused and push_endpoint(rt, QUEUE) == counted_stack.worker_url
