"""The video pipeline end to end on the emulators: real HTTP intake, real Pub/Sub push delivery,
real Firestore; only the outside world (source, processor, Instagram) is a loopback fake."""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import requests

from infra import emulators as emu
from services.control import retry_job
from services.intake import SIGNATURE_HEADER, sign
from services.jobs.models import ExecutionStatus, Job, JobCreate
from services.jobs.repository import JobRepository
from services.jobs.state_machine import Transition
from services.messages import JobMessage, PushEnvelope
from services.pipelines.spec import JobStatus
from services.pipelines.video import VIDEO
from services.publishing import publish_job
from services.worker.engine import Worker
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator


def webhook_body(
    delivery_id: str | None = None,
    video_url: str = "https://videos.example/clip.mp4",
    source_id: str | None = None,
) -> bytes:
    return json.dumps(
        {
            "accountId": "acc-7",
            "scenarioId": "scn-2",
            "sourceId": source_id or f"src-{uuid.uuid4().hex[:6]}",
            "userId": "user-1",
            "deliveryId": delivery_id or uuid.uuid4().hex,
            "videoUrl": video_url,
            "caption": "hello",
        }
    ).encode()


def post_webhook(stack, body: bytes, secret: str | None = None) -> requests.Response:
    secret = secret or stack.rt.settings.webhook_hmac_secret.get_secret_value()
    return requests.post(
        stack.intake_url,
        data=body,
        timeout=10,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)},
    )


def queued_video_job(repo, source_id: str, **input: str) -> Job:
    """A video job created straight in Firestore (no webhook, no message): the test delivers."""
    job, _ = repo.create_job(
        JobCreate(
            pipeline="video",
            account_id="acc-7",
            scenario_id="scn-2",
            source_id=source_id,
            user_id="user-1",
            input={"videoUrl": f"https://videos.example/{source_id}.mp4", **input},
        )
    )
    return job


def push_body(
    job: Job, message_id: str, subscription: str, *, delivery_attempt: int | None = None, **attributes: str
) -> dict[str, Any]:
    """What Pub/Sub POSTs for ``job``'s work message (``attributes``: extra ones, e.g. dead-letter)."""
    message = JobMessage(job_id=job.job_id, pipeline=job.pipeline, trace_id=job.trace_id)
    body: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(message.encode()).decode(),
            "attributes": {**message.attributes(), **attributes},
            "messageId": message_id,
        },
        "subscription": f"projects/x/subscriptions/{subscription}",
    }
    if delivery_attempt is not None:
        body["deliveryAttempt"] = delivery_attempt
    return body


def finished(repo, job_id):
    return lambda: (job := repo.get_job(job_id)).status.is_terminal and job


def settled(repo, job_id):
    """The job once it is finished and every attempt's execution record is closed: the worker
    closes the record just after committing the job's last stage, so a test that reads execution
    statuses waits for both."""

    def probe():
        job = repo.get_job(job_id)
        executions = repo.list_executions(job_id)
        closed = all(e.status is not ExecutionStatus.IN_PROGRESS for e in executions)
        return job.status.is_terminal and closed and job

    return probe


def test_webhook_drives_job_to_published_with_one_execution(stack, world):
    response = post_webhook(stack, webhook_body(source_id="src-1"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["traceId"] == "acc-7-scn-2-src-1" and body["stage"] == "received"
    repo = stack.rt.repo
    job = wait_for(settled(repo, body["jobId"]), what="job to finish")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["mediaContainerId"] and job.cost.total > 0
    assert [e.to_stage for e in repo.list_events(job.job_id)] == [s.name for s in VIDEO.stages]
    [execution] = repo.list_executions(job.job_id)
    assert execution.status is ExecutionStatus.SUCCESS and execution.attempt == 1
    assert execution.trace_id == job.trace_id and execution.action_duration_ms is not None
    assert execution.subscription.endswith("video-worker")


def test_retryable_failure_is_retried_with_one_execution_per_attempt(stack, world):
    world.configure(instagram={"fail_next_n": 3})  # one whole attempt: the client tries 3 times
    response = post_webhook(stack, webhook_body())
    job = wait_for(settled(stack.rt.repo, response.json()["jobId"]), timeout=60, what="job to finish")
    assert job.status is JobStatus.SUCCEEDED
    executions = stack.rt.repo.list_executions(job.job_id)
    assert [e.attempt for e in executions] == [1, 2]
    assert [e.status for e in executions] == [ExecutionStatus.FAIL, ExecutionStatus.SUCCESS]
    assert executions[0].retryable and "INSTAGRAM_UNAVAILABLE" in executions[0].last_error
    # download and process ran once: a retry never repeats a finished stage
    calls = world.stats()["calls"]
    assert calls["video.download"] == 1 and calls["processor.process"] == 1


def test_non_retryable_failure_fails_the_job_without_retry(stack, world):
    world.configure(processor={"permanent_failure": True})
    response = post_webhook(stack, webhook_body())
    job = wait_for(settled(stack.rt.repo, response.json()["jobId"]), what="job to fail")
    assert job.status is JobStatus.FAILED and job.error.stage == "processing" and not job.error.retryable
    [execution] = stack.rt.repo.list_executions(job.job_id)
    assert execution.status is ExecutionStatus.FAIL and execution.retryable is False


def test_poison_message_is_dead_lettered_then_replayed_once_healed(stack, world):
    response = post_webhook(stack, webhook_body(video_url="https://videos.example/poison.mp4"))
    job_id = response.json()["jobId"]
    repo = stack.rt.repo
    job = wait_for(
        lambda: (j := repo.get_job(job_id)).error and j.error.code == "DEAD_LETTERED" and j,
        timeout=90,
        what="dead-lettering",
    )
    assert job.status is JobStatus.FAILED and job.error.retryable
    executions = repo.list_executions(job_id)
    assert len(executions) == 5  # max_delivery_attempts in infra/topology.yaml
    assert executions[-1].queued_to_dlq and not any(e.queued_to_dlq for e in executions[:-1])
    # The last attempt's error code is kept as the cause: the dead-letters page groups by it.
    assert job.error.cause and executions[-1].last_error.startswith(f"{job.error.cause}: ")

    world.configure(video={"poison": False})
    retry_job(stack.rt, job_id, actor="test", reason="replay")
    job = wait_for(finished(repo, job_id), what="replayed job to finish")
    assert job.status is JobStatus.SUCCEEDED and job.attempt == 2


def test_duplicate_webhooks_make_one_job_and_one_message(stack, world):
    body = webhook_body(delivery_id="delivery-1")
    first, second = post_webhook(stack, body), post_webhook(stack, body)
    assert first.status_code == second.status_code == 202
    assert first.json()["jobId"] == second.json()["jobId"] and second.json()["duplicate"]
    job = wait_for(finished(stack.rt.repo, first.json()["jobId"]), what="job to finish")
    assert job.status is JobStatus.SUCCEEDED
    assert len(stack.rt.repo.list_executions(job.job_id)) == 1
    assert world.stats()["publishes"] == {job.job_id: 1}


def test_duplicate_pubsub_delivery_changes_nothing_twice(stack, world):
    response = post_webhook(stack, webhook_body())
    job = wait_for(finished(stack.rt.repo, response.json()["jobId"]), what="job to finish")
    [execution] = stack.rt.repo.list_executions(job.job_id)
    events_before = stack.rt.repo.list_events(job.job_id)
    # Pub/Sub delivers the same message again, as at-least-once delivery allows.
    envelope = push_body(job, execution.message_id, execution.subscription, delivery_attempt=1)
    again = requests.post(stack.worker_url, json=envelope, timeout=10)
    assert again.status_code == 200 and again.json()["reason"] == "DUPLICATE"
    envelope["deliveryAttempt"] = 2
    later = requests.post(stack.worker_url, json=envelope, timeout=10)
    assert later.status_code == 200 and later.json()["reason"] == "DONE"
    assert stack.rt.repo.list_events(job.job_id) == events_before
    assert world.stats()["publishes"] == {job.job_id: 1}


@pytest.mark.parametrize(
    "body,headers,status,code",
    [
        (b"{not json", None, 400, "INVALID_INPUT"),
        (json.dumps({"accountId": "a"}).encode(), None, 400, "INVALID_INPUT"),
        (webhook_body(), {"bad": "signature"}, 401, "INVALID_SIGNATURE"),
        (b"x" * (64 * 1024 + 1), None, 413, "PAYLOAD_TOO_LARGE"),
    ],
)
def test_bad_webhooks_are_refused_and_write_nothing(stack, body, headers, status, code):
    secret = "wrong-secret" if headers else None
    response = post_webhook(stack, body, secret=secret)
    assert response.status_code == status and response.json()["error"] == code
    assert stack.rt.repo.count_jobs() == 0


def test_worker_nacks_while_firestore_is_down_and_no_job_is_lost(stack, world, emulator_hosts, caplog):
    repo = stack.rt.repo
    # Slow processing keeps these jobs inside a stage when Firestore goes away...
    world.configure(processor={"latency_ms": 1500})
    running = [post_webhook(stack, webhook_body()).json()["jobId"] for _ in range(3)]
    # ...and these are queued while it is away, so their deliveries meet a dead Firestore first.
    waiting = [queued_video_job(repo, f"w{i}") for i in range(3)]
    wait_for(lambda: world.stats()["calls"].get("processor.process", 0) >= 1, what="processing to start")
    emu.freeze(emulator_hosts["firestore"])
    try:
        for job in waiting:
            publish_job(stack.rt, job)
        wait_for(
            lambda: any("Firestore unreachable" in r.getMessage() for r in caplog.records),
            timeout=30,
            what="a delivery nacked for Firestore being down",
        )
    finally:
        emu.thaw(emulator_hosts["firestore"])
    jobs = [
        wait_for(finished(repo, j), timeout=120, what=f"job {j} to finish")
        for j in running + [w.job_id for w in waiting]
    ]
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs), [(j.job_id, j.stage, j.error) for j in jobs]
    # Nothing half-written: every job has exactly its seven stage events.
    assert all(len(repo.list_events(j.job_id)) == len(VIDEO.stages) for j in jobs)


def test_overlapping_attempts_count_the_job_finished_once(stack, world, mocker):
    """An attempt past its delivery deadline and its redelivery both publish the same job; only the
    one whose write reached ``published`` counts it in jobs_finished_total."""
    repo = stack.rt.repo
    job = queued_video_job(repo, "overlap", caption="c")
    for stage in ("downloading", "downloaded", "processing"):
        repo.transition(job.job_id, Transition(stage, actor="worker"))
    repo.transition(
        job.job_id, Transition("processed", actor="worker", fields={"result": {"prepared": "gs://p/o.mp4"}})
    )
    # Publishing is slow, so both attempts are inside it at once.
    world.configure(instagram={"latency_ms": 1500})
    metrics = mocker.patch("services.jobs.repository.get_metrics").return_value

    def deliver(attempt: int):
        envelope = push_body(job, "overlap-1", "video-worker", delivery_attempt=attempt)
        return stack.rt.shared(Worker).handle(PushEnvelope.model_validate(envelope))

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(deliver, (1, 2)))
    assert [o.reason for o in outcomes] == ["DONE", "DONE"], outcomes
    assert repo.get_job(job.job_id).status is JobStatus.SUCCEEDED
    assert len(repo.list_executions(job.job_id)) == 2
    metrics.job_finished.assert_called_once_with("video", JobStatus.SUCCEEDED)


def test_a_dead_letter_delivered_twice_fails_the_job_and_counts_once(stack, mocker):
    repo = stack.rt.repo
    job = queued_video_job(repo, "dlq-twice")
    metrics = mocker.patch("services.dlq.get_metrics").return_value
    dead_letter = push_body(
        job,
        "dead-1",
        "video-jobs-dlq-analyzer",
        CloudPubSubDeadLetterSourceSubscription="video-worker",
        CloudPubSubDeadLetterSourceDeliveryCount="5",
    )
    answers = [requests.post(stack.dlq_url, json=dead_letter, timeout=10) for _ in range(2)]

    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["outcome"] for a in answers] == ["RECORDED", "RECORDED"]
    failed = repo.get_job(job.job_id)
    assert failed.status is JobStatus.FAILED and failed.error.code == "DEAD_LETTERED"
    assert [e.to_stage for e in repo.list_events(job.job_id)] == ["received", "failed"]
    metrics.dead_lettered.assert_called_once_with("video")


def test_a_duplicate_republishes_a_job_whose_first_request_died_before_publishing(stack, world):
    """The intake records no publish (commit + publish only); a crash between the two leaves a job
    no worker will take. A later duplicate delivery finds it untaken and old: it queues it."""
    body = webhook_body(delivery_id="delivery-crashed")
    payload = json.loads(body)
    key = f"video:{payload['accountId']}-{payload['scenarioId']}-{payload['sourceId']}:delivery-crashed"
    repo = stack.rt.repo
    # What the first request committed before it died, long enough ago that its publish is over.
    crashed_at = repo.clock() - timedelta(seconds=stack.rt.settings.intake_republish_after_seconds + 5)
    past = JobRepository(repo.db, repo.settings, clock=lambda: crashed_at)
    orphan, created = past.create_job(
        JobCreate(
            pipeline="video",
            account_id=payload["accountId"],
            scenario_id=payload["scenarioId"],
            source_id=payload["sourceId"],
            user_id=payload["userId"],
            idempotency_key=key,
            input={"videoUrl": payload["videoUrl"], "caption": payload["caption"]},
        )
    )
    assert created

    response = post_webhook(stack, body)  # the source's retry
    assert response.status_code == 202 and response.json()["jobId"] == orphan.job_id
    assert response.json()["duplicate"]
    job = wait_for(finished(repo, orphan.job_id), what="the orphaned job to finish")
    assert job.status is JobStatus.SUCCEEDED and world.stats()["publishes"] == {job.job_id: 1}
