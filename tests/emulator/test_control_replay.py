"""DLQ replay on the emulators: one entry, and 300 in bulk, twice at once, each replayed exactly once.

The dead letters are written straight through the repository (as the DLQ analyzer leaves them:
failed, error DEAD_LETTERED, retryable) to keep the test fast; the replays are real: every one is
published to the pipeline's topic, and the test pulls and counts the messages.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from google.api_core.exceptions import DeadlineExceeded
from google.cloud import pubsub_v1
from google.pubsub_v1.types import PullResponse

from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import mint_token
from services.control import DeadLetterFilter, ReplayReport, replay_dead_letters
from services.jobs.models import Execution, ExecutionStatus, Job, JobError
from services.jobs.repository import QuerySpec
from services.pipelines.spec import JobStatus
from services.runtime import Runtime

pytestmark = pytest.mark.emulator

DEAD_LETTERS = 300


@pytest.fixture
def rt(settings, clients, repo) -> Runtime:  # repo: owns cleanup
    # No push endpoints: the worker subscriptions are pull subscriptions the test drains itself.
    bootstrap(settings.google_cloud_project, prefix=settings.topic_prefix)
    return Runtime(settings, clients)


@pytest.fixture
def subscriber():
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


def admin(rt: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, 'ops', 'admin')}"}


def dead_letters(rt: Runtime, n: int, *, user: str = "alice", account: str = "acc-1") -> list[Job]:
    """n jobs as the DLQ analyzer leaves them, written in batches."""
    now = rt.repo.clock()
    jobs = [
        Job(
            pipeline="video",
            account_id=account,
            scenario_id="scn-1",
            source_id=f"src-{i:04d}",
            user_id=user,
            job_id=f"job_{int(now.timestamp() * 1000)}_{account}{i:04d}",
            trace_id=f"{account}-scn-1-src-{i:04d}",
            status=JobStatus.FAILED,
            stage="failed",
            progress_text="dead-lettered",
            attempt=1,
            created_at=now - timedelta(minutes=5),
            updated_at=now,
            heartbeat_at=now,
            finished_at=now,
            resume_stage="downloading",
            event_count=3,
            last_event_at=now,
            input={"videoUrl": "https://v/x.mp4"},
            error=JobError(
                code="DEAD_LETTERED",
                message="dead-lettered after 5 attempts",
                retryable=True,
                stage="downloading",
            ),
        )
        for i in range(n)
    ]
    rt.repo.put_jobs(jobs)
    return jobs


def drain(subscriber: pubsub_v1.SubscriberClient, rt: Runtime, expected: int) -> Counter[str]:
    """Pull (and ack) video-worker until ``expected`` messages arrived and a pull comes back empty."""
    path = subscriber.subscription_path(
        rt.settings.google_cloud_project, f"{rt.settings.topic_prefix}video-worker"
    )
    seen: Counter[str] = Counter()
    empty_pulls = 0
    while empty_pulls < 2:
        try:
            # The emulator holds an empty pull open; a short deadline makes "nothing more" quick.
            response = subscriber.pull(
                request={"subscription": path, "max_messages": 500}, timeout=2, retry=None
            )
        except DeadlineExceeded:
            response = PullResponse()
        if not response.received_messages:
            empty_pulls += 1 if sum(seen.values()) >= expected else 0
            continue
        for received in response.received_messages:
            message = json.loads(received.message.data)
            assert message["reason"] == "replay" and received.message.attributes["jobId"] == message["job_id"]
            seen[message["job_id"]] += 1
        subscriber.acknowledge(
            request={"subscription": path, "ack_ids": [r.ack_id for r in response.received_messages]}
        )
    return seen


def test_bulk_replay_of_300_run_twice_at_once_replays_each_job_exactly_once(rt, subscriber):
    jobs = dead_letters(rt, DEAD_LETTERS)
    # Both runs count the dead letters, then wait for each other: their pages really overlap.
    both_counted = threading.Barrier(2, timeout=30)

    def run(actor: str) -> ReplayReport:
        def progress(report: ReplayReport) -> None:
            if report.pages == 0:
                both_counted.wait()

        return replay_dead_letters(rt, DeadLetterFilter(), actor=actor, page_size=50, on_progress=progress)

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(run, ("user:ops-a", "user:ops-b")))
    assert [r.matched for r in reports] == [DEAD_LETTERS, DEAD_LETTERS]
    assert sum(r.replayed for r in reports) == DEAD_LETTERS
    assert all(r.failed == 0 and r.remaining == 0 for r in reports)

    published = drain(subscriber, rt, DEAD_LETTERS)
    assert set(published) == {j.job_id for j in jobs} and set(published.values()) == {1}

    for job in rt.repo.find_jobs(QuerySpec()):
        assert (job.attempt, job.status, job.error) == (2, JobStatus.RUNNING, None), job.job_id
        assert job.queued_message_id is not None
    one = rt.repo.list_events(jobs[0].job_id)
    assert [e.message for e in one] == ["retry: attempt 2"] and one[0].to_stage == "downloading"

    # safe to rerun: nothing is left, nothing is published again
    body = {"filter": {}, "limit": 1000, "pageSize": 50}
    again = create_app(rt).test_client().post("/api/dlq/replay", json=body, headers=admin(rt))
    assert again.status_code == 200
    assert [again.get_json()[k] for k in ("mode", "matched", "replayed", "remaining")] == ["bulk", 0, 0, 0]
    audit = rt.repo.find_audit(QuerySpec())
    assert sorted(r.action for r in audit) == ["dlq.replay_bulk"] * 3


def test_bulk_replay_reports_progress_page_by_page_and_respects_the_filter(rt, subscriber):
    dead_letters(rt, 25, account="acc-1")
    others = dead_letters(rt, 5, account="acc-2")
    seen: list[tuple[int, int]] = []
    report = replay_dead_letters(
        rt,
        DeadLetterFilter(account_id="acc-1"),
        actor="test",
        limit=20,
        page_size=8,
        on_progress=lambda r: seen.append((r.processed, r.matched)),
    )
    assert (report.matched, report.replayed, report.pages, report.remaining) == (20, 20, 3, 5)
    assert seen == [(0, 20), (8, 20), (16, 20), (20, 20)]
    rest = replay_dead_letters(rt, DeadLetterFilter(account_id="acc-1"), actor="test")
    assert (rest.replayed, rest.remaining) == (5, 0)
    assert all(rt.repo.get_job(j.job_id).status is JobStatus.FAILED for j in others)
    assert sum(drain(subscriber, rt, 25).values()) == 25


def test_single_replay_by_execution_is_owner_only_and_once(rt, subscriber):
    [job] = dead_letters(rt, 1, user="alice")
    execution = Execution(
        execution_id="m-1-5",
        message_id="m-1",
        job_id=job.job_id,
        workflow="video",
        subscription="video-worker",
        attempt=5,
        started_at=rt.repo.clock(),
        trace_id=job.trace_id,
        status=ExecutionStatus.FAIL,
        queued_to_dlq=True,
    )
    rt.repo.start_execution(execution)
    other = Execution(**{**execution.model_dump(), "execution_id": "m-0-1", "queued_to_dlq": False})
    rt.repo.start_execution(other)
    client = create_app(rt).test_client()

    def replay(sub: str, body: dict) -> tuple[int, dict]:
        response = client.post(
            "/api/dlq/replay", json=body, headers={"Authorization": f"Bearer {mint_token(rt.settings, sub)}"}
        )
        return response.status_code, response.get_json()

    assert replay("bob", {"executionId": "m-1-5"})[0] == 404  # not his: reads as missing
    assert replay("bob", {"filter": {}})[0] == 403  # bulk is for admins
    status, body = replay("alice", {"executionId": "m-0-1"})
    assert (status, body["error"]) == (409, "NOT_DEAD_LETTERED")
    status, body = replay("alice", {"executionId": "m-1-5"})
    assert status == 200 and (body["mode"], body["replayed"], body["jobId"]) == ("single", 1, job.job_id)
    status, body = replay("alice", {"jobId": job.job_id})
    assert (status, body["error"]) == (409, "NOT_DEAD_LETTERED")  # already replayed
    assert drain(subscriber, rt, 1) == Counter({job.job_id: 1})
    assert rt.repo.get_job(job.job_id).attempt == 2
