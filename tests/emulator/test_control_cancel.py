"""Cancel and retry through the API, with a real worker behind emulator push subscriptions."""

from __future__ import annotations

import pytest

from services.api import create_app
from services.auth import mint_token
from services.jobs.models import ExecutionStatus
from services.pipelines.spec import JobStatus
from tests.emulator.test_video_pipeline import finished, post_webhook, settled, webhook_body
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator

OWNER = "user-1"  # the userId webhook_body sends


def owner(rt) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, OWNER)}"}


def test_cancel_stops_a_running_step_without_waiting_for_its_outside_call(stack, world):
    world.configure(processor={"latency_ms": 1800})
    repo = stack.rt.repo
    client = create_app(stack.rt).test_client()
    job_id = post_webhook(stack, webhook_body()).json()["jobId"]
    wait_for(lambda: repo.get_job(job_id).stage == "processing", what="the job to be processing")

    response = client.delete(f"/api/jobs/{job_id}", headers=owner(stack.rt))
    assert response.status_code == 202, response.get_json()  # inside a step: its worker stops it
    assert response.get_json()["cancelRequested"] is True and response.get_json()["status"] == "running"

    job = wait_for(settled(repo, job_id), what="the job to stop")
    assert job.status is JobStatus.CANCELLED and job.stage == "cancelled"
    events = repo.list_events(job_id)
    # Stopped mid-step: "processed" never came, and the event says where it stopped.
    assert [e.to_stage for e in events] == [
        "received",
        "downloading",
        "downloaded",
        "processing",
        "cancelled",
    ]
    assert events[-1].actor == "worker" and "step process in processing" in events[-1].message
    assert world.stats()["calls"].get("instagram.publish", 0) == 0  # publishing never started
    [execution] = repo.list_executions(job_id)
    assert execution.status is ExecutionStatus.CANCELLED
    again = client.delete(f"/api/jobs/{job_id}", headers=owner(stack.rt))
    assert again.status_code == 200 and again.get_json()["status"] == "cancelled"  # idempotent


def test_a_cancelled_pending_job_never_starts(stack, world):
    repo = stack.rt.repo
    client = create_app(stack.rt).test_client()
    admin = {"Authorization": f"Bearer {mint_token(stack.rt.settings, 'ops', 'admin')}"}
    assert client.post("/api/admin/queues/video-worker/pause", headers=admin).status_code == 200
    job_id = post_webhook(stack, webhook_body()).json()["jobId"]
    response = client.delete(f"/api/jobs/{job_id}", headers=owner(stack.rt))
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert client.post("/api/admin/queues/video-worker/resume", headers=admin).status_code == 200

    # the queued message is still delivered once the queue resumes; the worker runs nothing
    wait_for(lambda: repo.list_executions(job_id), what="the queued message to be delivered")
    [execution] = wait_for(
        lambda: [e for e in repo.list_executions(job_id) if e.finished_at], what="the delivery to finish"
    )
    assert execution.status is ExecutionStatus.CANCELLED
    assert [e.to_stage for e in repo.list_events(job_id)] == ["received", "cancelled"]
    assert world.stats()["calls"] == {}


def test_retry_after_a_failure_runs_a_new_attempt_of_the_same_job(stack, world):
    world.configure(processor={"permanent_failure": True})
    repo = stack.rt.repo
    client = create_app(stack.rt).test_client()
    job_id = post_webhook(stack, webhook_body()).json()["jobId"]
    failed = wait_for(finished(repo, job_id), what="the job to fail")
    assert failed.status is JobStatus.FAILED and not failed.error.retryable

    world.configure(processor={"permanent_failure": False})
    response = client.post(f"/api/jobs/{job_id}/retry", headers=owner(stack.rt))
    assert response.status_code == 202 and response.get_json()["attempt"] == 2
    assert response.get_json()["stage"] == "processing"  # resumes where it stopped
    job = wait_for(finished(repo, job_id), what="the retried job to finish")
    assert job.status is JobStatus.SUCCEEDED and job.attempt == 2
    assert world.stats()["calls"]["video.download"] == 1  # the finished download is not repeated
    refused = client.post(f"/api/jobs/{job_id}/retry", headers=owner(stack.rt))
    assert refused.status_code == 409 and refused.get_json()["error"] == "ILLEGAL_TRANSITION"
