"""The job store against the real Firestore emulator: transactions, preconditions, idempotency."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core.exceptions import Aborted

from services.errors import IllegalTransition, JobNotFound, TransitionConflict
from services.jobs.models import JobCreate, JobError
from services.jobs.repository import OPTIMISTIC_WRITE_ATTEMPTS, JobRepository
from services.jobs.state_machine import Transition
from services.pipelines.spec import JobStatus
from services.pipelines.video import VIDEO
from services.worker.engine import is_infrastructure_error

pytestmark = pytest.mark.emulator


def new_video(key: str | None = None, source: str = "src-1") -> JobCreate:
    return JobCreate(
        pipeline="video",
        account_id="acc-1",
        scenario_id="scn",
        source_id=source,
        user_id="u1",
        idempotency_key=key,
        input={"videoUrl": "http://x/v.mp4"},
    )


def stored_doc(repo: JobRepository, job_id: str) -> dict:
    return repo.job_ref(job_id).get().to_dict()


def test_create_stores_trace_id_parts_and_first_event(repo):
    job, created = repo.create_job(new_video())
    assert created
    doc = stored_doc(repo, job.job_id)
    assert doc["traceId"] == "acc-1-scn-src-1"
    assert (doc["accountId"], doc["scenarioId"], doc["sourceId"]) == ("acc-1", "scn", "src-1")
    assert doc["stage"] == "received" and doc["status"] == "queued" and doc["staleAt"] is not None
    [event] = repo.list_events(job.job_id)
    assert event.to_stage == "received" and event.from_stage is None


def test_twenty_concurrent_creates_of_one_key_make_exactly_one_job(repo):
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: repo.create_job(new_video(key="delivery-42")), range(20)))
    assert len({job.job_id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert repo.count_jobs() == 1


def test_walks_every_legal_transition_with_a_timeline(repo):
    job, _ = repo.create_job(new_video())
    for stage in VIDEO.stages[1:]:
        result = repo.transition(job.job_id, Transition(stage.name, actor="worker", expected_stage=job.stage))
        assert result.applied
        job = result.job
    stored = repo.get_job(job.job_id)
    assert stored.status is JobStatus.SUCCEEDED and stored.finished_at is not None
    assert stored.expire_at is not None and stored.stale_at is None
    events = repo.list_events(job.job_id)
    assert [e.to_stage for e in events] == [s.name for s in VIDEO.stages]
    assert [e.from_stage for e in events[1:]] == [s.name for s in VIDEO.stages[:-1]]
    assert all(e.duration_ms is not None and e.duration_ms >= 0 for e in events[1:])
    assert all(e.expire_at is not None for e in events)


def test_illegal_transition_raises_and_writes_nothing(repo):
    job, _ = repo.create_job(new_video())
    repo.transition(job.job_id, Transition("processing", actor="worker"))
    before = stored_doc(repo, job.job_id)
    with pytest.raises(IllegalTransition):
        repo.transition(job.job_id, Transition("downloading", actor="late"))
    with pytest.raises(IllegalTransition):
        repo.transition(job.job_id, Transition("no-such-stage", actor="x"))
    assert stored_doc(repo, job.job_id) == before
    assert len(repo.list_events(job.job_id)) == 2


def test_out_of_order_and_duplicate_events_never_move_back(repo):
    job, _ = repo.create_job(new_video())
    repo.transition(job.job_id, Transition("published", actor="publisher"))
    duplicate = repo.transition(job.job_id, Transition("published", actor="publisher"))
    assert not duplicate.applied
    for late in ("downloading", "processed", "failed", "timed_out"):
        with pytest.raises(IllegalTransition):
            repo.transition(job.job_id, Transition(late, actor="late"))
    assert repo.get_job(job.job_id).stage == "published"
    assert len(repo.list_events(job.job_id)) == 2


def test_precondition_conflict_is_typed(repo):
    job, _ = repo.create_job(new_video())
    repo.transition(job.job_id, Transition("downloading", actor="a"))
    with pytest.raises(TransitionConflict):
        repo.transition(job.job_id, Transition("downloaded", actor="b", expected_stage="received"))


def test_retry_reopens_failed_job_with_next_attempt(repo):
    job, _ = repo.create_job(new_video())
    repo.transition(job.job_id, Transition("processing", actor="worker"))
    repo.transition(
        job.job_id,
        Transition(
            "failed", actor="worker", error=JobError(code="ENCODER", message="crashed", retryable=True)
        ),
    )
    failed = repo.get_job(job.job_id)
    assert failed.error is not None and failed.error.stage == "processing"
    reopened = repo.retry(job.job_id, actor="admin")
    stored = repo.get_job(job.job_id)
    assert stored.attempt == reopened.attempt == 2
    assert stored.stage == "processing" and stored.status is JobStatus.RUNNING
    assert stored.error is None and stored.finished_at is None and stored.expire_at is None
    events = repo.list_events(job.job_id)
    assert [e.to_stage for e in events] == ["received", "processing", "failed", "processing"]
    assert events[-1].attempt == 2
    with pytest.raises(IllegalTransition):
        repo.retry(job.job_id, actor="admin")  # running again: nothing to retry


def test_concurrent_transitions_to_one_stage_apply_once(repo):
    job, _ = repo.create_job(new_video())
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(lambda _: repo.transition(job.job_id, Transition("downloading", actor="w")), range(3))
        )
    assert sum(r.applied for r in results) == 1
    assert len(repo.list_events(job.job_id)) == 2


def test_stale_query_returns_only_jobs_past_their_limit(repo, settings, clients):
    _fresh, _ = repo.create_job(new_video(source="fresh"))
    past = datetime.now(UTC) - timedelta(hours=2)
    old_repo = JobRepository(clients.firestore, settings, clock=lambda: past)
    stale, _ = old_repo.create_job(new_video(source="stale"))
    done, _ = old_repo.create_job(new_video(source="done"))
    old_repo.transition(done.job_id, Transition("published", actor="w"))
    found = repo.find_stale(datetime.now(UTC), limit=10)
    assert [j.job_id for j in found] == [stale.job_id]


def test_heartbeat_pushes_stale_time(repo):
    job, _ = repo.create_job(new_video())
    beat = repo.heartbeat(job.job_id)
    assert beat.heartbeat_at >= job.heartbeat_at and beat.stale_at >= job.stale_at


class WritesMeanwhile:
    """A clock for a repository whose reads of "now" let another writer commit first: the job
    changes between a read-modify-write's read and its write, ``times`` times."""

    def __init__(self, write: Callable[[], object], times: int) -> None:
        self.write, self.left = write, times

    def __call__(self) -> datetime:
        if self.left > 0:
            self.left -= 1
            self.write()
        return datetime.now(UTC)


def test_a_heartbeat_meeting_a_write_decides_again_on_the_new_version(repo, settings, clients):
    job, _ = repo.create_job(new_video())
    repo.transition(job.job_id, Transition("downloading", actor="w"))
    finish = WritesMeanwhile(lambda: repo.transition(job.job_id, Transition("published", actor="w")), 1)
    racing = JobRepository(clients.firestore, settings, clock=finish)
    beat = racing.heartbeat(job.job_id, progress_text="50%")
    # Its first write was refused (the job changed); on the new version, a finished job, it writes
    # nothing: no heartbeat fields or progress text on a published job.
    assert beat.status is JobStatus.SUCCEEDED
    stored = repo.get_job(job.job_id)
    assert stored.status is JobStatus.SUCCEEDED and stored.progress_text != "50%"
    assert stored.heartbeat_at <= stored.updated_at


def test_a_heartbeat_on_a_job_changing_under_every_attempt_gives_up_as_a_store_error(repo, settings, clients):
    job, _ = repo.create_job(new_video())
    moves = itertools.count()  # a write of the same value changes nothing, and no update time
    churn = WritesMeanwhile(
        lambda: repo.update_fields(job.job_id, progress_text=f"moved {next(moves)}"), 1000
    )
    racing = JobRepository(clients.firestore, settings, clock=churn)
    with pytest.raises(Aborted) as raised:
        racing.heartbeat(job.job_id)
    assert is_infrastructure_error(raised.value)  # the worker nacks and retries; nothing is lost
    assert churn.left == 1000 - OPTIMISTIC_WRITE_ATTEMPTS


def test_missing_job_is_typed(repo):
    with pytest.raises(JobNotFound):
        repo.get_job("job_missing")
