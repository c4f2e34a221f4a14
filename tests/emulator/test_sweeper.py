"""The stale-job sweeper on the Firestore emulator: it reads only stale candidates, times each out
once (also when two sweeps race), and leaves alone a job that moved or revived after its query."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from services.jobs.models import Job, make_trace_id
from services.jobs.repository import JobRepository
from services.jobs.state_machine import Transition
from services.pipelines.music_clips import MUSIC_CLIPS
from services.pipelines.spec import JobStatus, PipelineSpec
from services.pipelines.video import VIDEO
from services.runtime import Runtime
from services.sweeper import sweep_stale_jobs

pytestmark = pytest.mark.emulator


class DocumentReads:
    """Counts the documents Firestore sends this client (what it bills as reads): query results and
    document gets, inside transactions or not, counted on the GAPIC client every read goes through."""

    def __init__(self, db: Any) -> None:
        self._api = db._firestore_api
        self.count = 0

    def _counting(self, call: Callable[..., Iterator[Any]], field: str) -> Callable[..., Iterator[Any]]:
        def wrapped(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for response in call(*args, **kwargs):
                if response._pb.HasField(field):
                    self.count += 1
                yield response

        return wrapped

    def __enter__(self) -> DocumentReads:
        self._api.run_query = self._counting(self._api.run_query, "document")
        self._api.batch_get_documents = self._counting(self._api.batch_get_documents, "found")
        return self

    def __exit__(self, *exc: object) -> None:
        del self._api.run_query, self._api.batch_get_documents


def built_job(
    spec: PipelineSpec, now: datetime, *, stale_by: timedelta | None, finished: bool = False
) -> Job:
    """A job as the worker would have left it: waiting in a middle stage, or finished.

    ``stale_by``: how far in the past its staleAt lies (negative: in the future)."""
    stage = spec.succeeded if finished else spec.stages[-2]
    source = uuid.uuid4().hex[:10]
    heartbeat = now - timedelta(seconds=stage.timeout_seconds) - (stale_by or timedelta())
    deadline = heartbeat + timedelta(seconds=spec.max_duration_seconds) if spec.max_duration_seconds else None
    return Job(
        pipeline=spec.name,
        account_id="acc",
        scenario_id="scn",
        source_id=source,
        user_id="user-1",
        job_id=f"job_{int(now.timestamp() * 1000)}_{source}",
        trace_id=make_trace_id("acc", "scn", source),
        status=spec.status_of(stage.name),
        stage=stage.name,
        progress_text=stage.progress_text,
        created_at=heartbeat,
        updated_at=heartbeat,
        heartbeat_at=heartbeat,
        deadline_at=deadline,
        stale_at=None if finished or stale_by is None else now - stale_by,
        event_count=1,
        last_event_at=heartbeat,
    )


@pytest.fixture
def rt(settings, clients, repo) -> Runtime:  # repo: owns cleanup
    return Runtime(settings, clients)


def timed_out_ids(repo: JobRepository) -> set[str]:
    docs = repo.query_jobs().where(filter=FieldFilter("status", "==", JobStatus.TIMED_OUT.value)).get()
    return {d.id for d in docs}


def test_sweep_over_5000_jobs_reads_only_the_20_stale_ones_and_times_them_out(rt):
    now = datetime.now(UTC)
    stale = [
        built_job(spec, now, stale_by=timedelta(minutes=1 + i))
        for i, spec in enumerate([VIDEO, MUSIC_CLIPS] * 10)
    ]
    healthy = [
        built_job(VIDEO if i % 2 else MUSIC_CLIPS, now, stale_by=-timedelta(minutes=5), finished=i % 3 == 0)
        for i in range(4980)
    ]
    rt.repo.put_jobs(healthy + stale)
    assert rt.repo.count_jobs() == 5000

    with DocumentReads(rt.clients.firestore) as reads:
        report = sweep_stale_jobs(rt, now=now)

    assert report.found == 20 and report.timed_out == 20
    assert report.by_pipeline == {"video": 10, "music_clips": 10}
    # The query returns the 20 candidates and each transaction re-reads its job: nothing else.
    assert 20 <= reads.count <= 2 * 20, reads.count
    assert timed_out_ids(rt.repo) == {job.job_id for job in stale}
    music = rt.repo.get_job(stale[1].job_id)
    assert music.stage == "STAGE_99_TIMEOUT" and music.stale_at is None and music.finished_at is not None
    assert music.error.code == "DEADLINE_EXCEEDED" and music.error.stage == "STAGE_40_SUNO_PENDING"
    [event] = rt.repo.list_events(music.job_id)
    assert event.actor == "sweeper" and event.from_stage == "STAGE_40_SUNO_PENDING"
    assert "600s limit" in event.message and "STAGE_40_SUNO_PENDING" in event.message
    video = rt.repo.get_job(stale[0].job_id)
    assert video.stage == "timed_out" and video.error.code == "STALE_HEARTBEAT"
    assert "no heartbeat for" in video.error.message and "in publishing (limit 600s)" in video.error.message

    # Nothing is left to find: a second sweep reads nothing and changes nothing.
    with DocumentReads(rt.clients.firestore) as reads:
        again = sweep_stale_jobs(rt, now=now)
    assert (again.found, again.timed_out, reads.count) == (0, 0, 0)


def test_two_sweeps_at_once_time_each_job_out_once(rt):
    now = datetime.now(UTC)
    stale = [built_job(spec, now, stale_by=timedelta(seconds=30)) for spec in [VIDEO, MUSIC_CLIPS] * 10]
    rt.repo.put_jobs(stale + [built_job(VIDEO, now, stale_by=-timedelta(minutes=1)) for _ in range(30)])
    start = threading.Barrier(2)
    reports = []

    def sweep() -> None:
        start.wait()
        reports.append(sweep_stale_jobs(rt, now=now))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert len(reports) == 2
    assert sum(r.timed_out for r in reports) == 20
    assert timed_out_ids(rt.repo) == {job.job_id for job in stale}
    for job in stale:
        events = rt.repo.list_events(job.job_id)
        assert [e.to_stage for e in events] == [get_timed_out(job)], events


def get_timed_out(job: Job) -> str:
    return (MUSIC_CLIPS if job.pipeline == MUSIC_CLIPS.name else VIDEO).timed_out.name


def test_job_that_moves_or_revives_after_the_query_is_left_alone(rt, monkeypatch):
    now = datetime.now(UTC)
    moved, revived, stuck = (built_job(VIDEO, now, stale_by=timedelta(seconds=5)) for _ in range(3))
    rt.repo.put_jobs([moved, revived, stuck])
    query = rt.repo.find_stale

    def find_stale_then_race(at: datetime, limit: int) -> list[Job]:
        found = query(at, limit)
        if found:  # between the sweeper's query and its transactions, the world moves on
            rt.repo.transition(
                moved.job_id, Transition("published", actor="worker", expected_stage="publishing")
            )
            rt.repo.heartbeat(revived.job_id)
        return found

    monkeypatch.setattr(rt.repo, "find_stale", find_stale_then_race)
    report = sweep_stale_jobs(rt, now=now)

    assert report.found == 3 and report.timed_out == 1
    assert rt.repo.get_job(stuck.job_id).status is JobStatus.TIMED_OUT
    assert rt.repo.get_job(moved.job_id).stage == "published"
    assert rt.repo.get_job(revived.job_id).status is JobStatus.RUNNING
