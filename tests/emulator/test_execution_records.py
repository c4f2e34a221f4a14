"""Execution records (seed 000 §14, seed 004) as the worker writes them for real deliveries: who the
job is for, which request ran the attempt, what it left behind, and a hung step told apart as
`timeout`."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import firestore

from services.control import pause_queue, resume_queue, worker_queues
from services.jobs.models import ExecutionStatus
from services.pipelines.spec import JobStatus
from services.settings import Settings
from services.telemetry import Telemetry, configure_logging
from tests.emulator.test_video_pipeline import post_webhook, settled, webhook_body
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator


@pytest.fixture
def pipeline_settings(pipeline_settings: Settings) -> Settings:
    # A step that takes over a second is a hung one here (50 s as deployed).
    return pipeline_settings.model_copy(update={"handler_timeout_seconds": 1.0})


@pytest.fixture
def log_lines(pipeline_settings: Settings) -> Iterator[io.StringIO]:
    """Every JSON line the process writes while the test runs (the stack runs in this process); an
    active Telemetry keeps the entry points from installing their own log handler."""
    telemetry = Telemetry.create(pipeline_settings)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging(pipeline_settings, stream=buffer)
    with telemetry.activated():
        yield buffer
    telemetry.shutdown()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_record_names_the_user_the_request_and_the_artifacts(stack, world, log_lines):
    response = post_webhook(stack, webhook_body(source_id="src-rec"))
    repo = stack.rt.repo
    job = wait_for(settled(repo, response.json()["jobId"]), what="job to finish")
    assert job.status is JobStatus.SUCCEEDED, job.error
    [execution] = repo.list_executions(job.job_id)
    assert execution.user_id == job.user_id == "user-1"
    assert execution.request_id and execution.request_id.startswith("req_")
    assert execution.artifact_paths == {
        "downloaded": job.result["downloaded"],
        "prepared": job.result["prepared"],
        "permalink": job.result["permalink"],
    }
    # The request id finds the attempt's log lines.
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.strip()]
    of_request = [
        line
        for line in lines
        if line.get("logging.googleapis.com/labels", {}).get("requestId") == execution.request_id
    ]
    assert len(of_request) >= 3 and all(
        line["logging.googleapis.com/labels"].get("jobId") in (job.job_id, None) for line in of_request
    )


def test_a_step_past_the_handler_timeout_is_recorded_as_timeout_then_retried(stack, world):
    world.configure(processor={"latency_ms": 1800})  # answers, but after the step's limit
    job_id = post_webhook(stack, webhook_body(source_id="src-hang")).json()["jobId"]
    repo = stack.rt.repo

    def a_timed_out_attempt():
        return [e for e in repo.list_executions(job_id) if e.status is ExecutionStatus.TIMEOUT]

    [timed_out, *_] = wait_for(a_timed_out_attempt, timeout=30, what="an attempt recorded as timeout")
    assert timed_out.retryable is True and timed_out.last_error.startswith("HANDLER_TIMEOUT")
    assert timed_out.action_duration_ms is not None and timed_out.action_duration_ms >= 1000
    # Only the download finished in that attempt.
    assert set(timed_out.artifact_paths) == {"downloaded"}

    world.configure(processor={"latency_ms": 0})
    job = wait_for(settled(repo, job_id), timeout=60, what="the retry to finish the job")
    assert job.status is JobStatus.SUCCEEDED
    assert repo.list_executions(job_id)[-1].status is ExecutionStatus.SUCCESS


def test_the_payload_snapshot_is_the_jobs_original_input_with_secrets_redacted(stack, world):
    planted_key = stack.rt.settings.suno_api_key.get_secret_value()
    body = json.loads(
        webhook_body(source_id="src-snap", video_url="https://videos.example/clip.mp4?token=signed-7f3a")
    )
    body["caption"] = f"launch day {planted_key}"
    raw = json.dumps(body).encode()
    repo = stack.rt.repo
    job = wait_for(settled(repo, post_webhook(stack, raw).json()["jobId"]), what="job to finish")
    [execution] = repo.list_executions(job.job_id)
    snapshot = execution.payload_snapshot
    assert snapshot["input"] == {
        "videoUrl": "https://videos.example/clip.mp4?token=[REDACTED]",
        "caption": "launch day [REDACTED]",
    }
    assert snapshot["message"]["data"]["job_id"] == job.job_id
    stored = json.dumps(snapshot)
    assert planted_key not in stored and "signed-7f3a" not in stored


def test_an_attempt_that_fails_on_a_locked_job_is_counted_as_a_failure(stack, world, mocker):
    """The soak's path: another transaction holds the job's document, so the attempt's stage commit
    gives up (Aborted: lock timeout) and so does the retrying mark written after the record is
    closed; the attempt is still counted by worker_failure_total, once."""
    metrics = mocker.patch("services.worker.engine.get_metrics").return_value
    rt, repo = stack.rt, stack.rt.repo
    queues = sorted(worker_queues(rt))
    for queue in queues:
        pause_queue(rt, queue, actor="test")
    job_id = post_webhook(stack, webhook_body(source_id="src-locked")).json()["jobId"]

    held, release = threading.Event(), threading.Event()

    @firestore.transactional
    def read_and_hold(transaction: firestore.Transaction) -> None:
        repo.job_ref(job_id).get(transaction=transaction)
        held.set()
        release.wait(timeout=120)

    def hold() -> None:
        # The emulator may expire a transaction held this long; its empty commit then fails.
        with contextlib.suppress(GoogleAPICallError, ValueError):
            read_and_hold(rt.clients.firestore.transaction())

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=10)
        for queue in queues:
            resume_queue(rt, queue, actor="test")

        def a_failed_attempt():
            return [e for e in repo.list_executions(job_id) if e.status is ExecutionStatus.FAIL]

        [failed, *_] = wait_for(a_failed_attempt, timeout=120, what="an attempt failed on the lock")
        assert failed.last_error.startswith("DEPENDENCY_UNAVAILABLE") and failed.retryable is True

        def counted_failures():
            return [c for c in metrics.record_execution.call_args_list if c.args[1] == "failure"]

        # The lock is held until the attempt has answered: its retrying mark meets the lock too.
        wait_for(counted_failures, timeout=45, what="the failed attempt counted by worker_failure_total")
    finally:
        release.set()
        holder.join(timeout=30)

    job = wait_for(settled(repo, job_id), timeout=120, what="a redelivery to finish the job")
    assert job.status is JobStatus.SUCCEEDED
    records = repo.list_executions(job_id)
    outcomes = [str(c.args[1]) for c in metrics.record_execution.call_args_list]
    assert outcomes.count("failure") == sum(e.status is ExecutionStatus.FAIL for e in records) >= 1
    assert outcomes.count("success") == sum(e.status is ExecutionStatus.SUCCESS for e in records) == 1


def test_a_failed_attempt_is_counted_when_its_record_closes_not_after_the_follow_up(stack, world, mocker):
    """The short soak's path: the attempt's record is closed as failed, then marking the job
    retrying waits (a contended job) and the instance is killed meanwhile. The failure must be
    counted already, or worker_failure_total ends one short of the records."""
    metrics = mocker.patch("services.worker.engine.get_metrics").return_value
    repo = stack.rt.repo
    marking, instance_dies = threading.Event(), threading.Event()

    def mark_that_hangs(job_id: str, within_seconds: float) -> None:
        marking.set()
        instance_dies.wait(timeout=60)

    mocker.patch.object(repo, "mark_retrying", side_effect=mark_that_hangs)
    world.configure(processor={"latency_ms": 1800})  # past the handler's 1 s: a retryable timeout
    job_id = post_webhook(stack, webhook_body(source_id="src-count")).json()["jobId"]
    try:
        assert marking.wait(timeout=30), "the attempt never reached its retrying mark"
        [closed] = [e for e in repo.list_executions(job_id) if e.finished_at is not None]
        assert closed.status is ExecutionStatus.TIMEOUT
        # Counted while the follow-up still hangs: the record and the counter agree already.
        assert [c.args[1] for c in metrics.record_execution.call_args_list] == ["failure"]
    finally:
        instance_dies.set()
        world.configure(processor={"latency_ms": 0})
