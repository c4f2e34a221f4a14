"""The stream's broadcaster and change feed without a database: fan-out (one write per client
per tick), visibility, filters, Last-Event-ID replay from the store, slow clients, shutdown, and the
feed's tail, sweep and paging.

The jobs table is a stand-in with the repository's ``jobs_changed_after`` contract;
tests/emulator/test_stream.py runs the Firestore one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import pytest
from pydantic import ValidationError

from services.api import change_feed
from services.api.change_feed import Change, ChangeFeed, FeedCursor, JobFacts
from services.api.stream import (
    Broadcaster,
    StreamFilters,
    StreamUnavailable,
    Subscription,
    encode_frame,
    peer_closed,
    stream_capacity,
)
from services.auth import Principal, Role
from services.errors import InvalidInput
from services.jobs.models import Job
from services.jobs.repository import ChangedJob, utcnow
from services.pipelines.spec import JobStatus
from services.settings import Settings
from tests.helpers import wait_for

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ADMIN = Principal("ops", Role.ADMIN)
ALICE = Principal("alice", Role.USER)
BOB = Principal("bob", Role.USER)
ANY = StreamFilters()


def make_job(
    job_id: str = "job_1",
    *,
    user: str = "alice",
    status: JobStatus = JobStatus.QUEUED,
    stage: str = "received",
    pipeline: str = "video",
    account: str = "acc-1",
    at: datetime = T0,
) -> Job:
    return Job(
        job_id=job_id,
        pipeline=pipeline,
        account_id=account,
        scenario_id="scn",
        source_id="src",
        user_id=user,
        trace_id=f"{account}-scn-src",
        status=status,
        stage=stage,
        progress_text=stage,
        created_at=T0,
        updated_at=at,
        heartbeat_at=at,
    )


# ---- a jobs table stand-in -------------------------------------------------------------------------
@dataclass
class FakeJobs:
    """The change source's contract over a dict: jobs past a cursor in (updatedAt, jobId) order.
    ``commit`` stores a job as Firestore would, stamping its commit time."""

    rows: dict[str, ChangedJob] = field(default_factory=dict)
    reads: int = 0
    failing: bool = False

    def commit(self, job: Job, committed_at: datetime | None = None) -> Job:
        previous = self.rows.get(job.job_id)
        stamp = committed_at or max(
            utcnow(), previous.update_time + timedelta(microseconds=1) if previous else T0
        )
        self.rows[job.job_id] = ChangedJob(job, stamp)
        return job

    def __call__(self, after: FeedCursor, *, until: datetime | None = None, limit: int) -> list[ChangedJob]:
        if self.failing:
            raise ConnectionError("firestore unreachable")
        self.reads += 1
        found = sorted(
            (c for c in self.rows.values() if FeedCursor.of(c.job) > after),
            key=lambda c: FeedCursor.of(c.job),
        )
        return [c for c in found if until is None or c.job.updated_at <= until][:limit]


# ---- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture
def settings() -> Settings:
    return Settings(
        metrics_exporter="none",
        sse_heartbeat_seconds=0.05,
        sse_client_queue_size=8,
        sse_replay_events=5,
        sse_max_streams=10,
        sse_poll_seconds=0.01,
        sse_batch_seconds=0.01,
        threads=64,
    )


@pytest.fixture
def source() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
def stopping() -> threading.Event:
    return threading.Event()


@pytest.fixture
def broadcaster(settings: Settings, source: FakeJobs, stopping: threading.Event) -> Iterator[Broadcaster]:
    b = Broadcaster(settings, source, clock=utcnow, stopping=stopping.is_set)
    yield b
    b.close()


@dataclass
class Client:
    subscription: Subscription
    frames: Iterator[bytes]
    pending: list[dict[str, Any]] = field(default_factory=list)
    writes: int = 0

    def read(self, count: int, *, max_heartbeats: int = 200) -> list[dict[str, Any]]:
        """The next ``count`` events (heartbeats skipped, at most ``max_heartbeats`` of them)."""
        for _ in range(count + max_heartbeats):
            if len(self.pending) >= count:
                break
            write = next(self.frames)
            self.writes += 1
            if not write.startswith(b":"):
                self.pending += [parse(f) for f in write.split(b"\n\n") if f.strip()]
        events, self.pending = self.pending[:count], self.pending[count:]
        assert len(events) == count, f"got {events}"
        return events

    def quiet(self, heartbeats: int = 3) -> bool:
        """True if the next frames are only heartbeats (nothing was queued for this client)."""
        return not self.pending and all(next(self.frames) == b": keepalive\n\n" for _ in range(heartbeats))


def connect(
    b: Broadcaster, principal: Principal, filters: StreamFilters = ANY, last_event_id: str | None = None
) -> Client:
    subscription = b.subscribe(principal, filters, last_event_id)
    client = Client(subscription, b.frames(subscription))
    hello = parse(next(client.frames).split(b"\n", 1)[1])  # after the "retry:" line
    assert hello["event"] == "hello" and hello["data"]["subject"] == principal.subject
    assert FeedCursor.parse(hello["id"]) is not None  # resuming from hello replays from there
    return client


def parse(frame: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for line in frame.decode().strip("\n").split("\n"):
        name, _, value = line.partition(": ")
        fields[name] = value
    data = fields.get("data")
    return {"id": fields.get("id"), "event": fields.get("event"), "data": json.loads(data) if data else None}


def send(b: Broadcaster, *jobs: Job, previous: JobFacts | None = None) -> None:
    """One feed tick carrying ``jobs``."""
    b.publish([Change(job, previous) for job in jobs])


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


# ---- fan-out and visibility ----------------------------------------------------------------------
def test_one_change_reaches_every_client_that_may_see_it(broadcaster: Broadcaster):
    admins = [connect(broadcaster, ADMIN), connect(broadcaster, Principal("ops2", Role.ADMIN))]
    alice, bob = connect(broadcaster, ALICE), connect(broadcaster, BOB)

    job = make_job("job_a", user="alice")
    send(broadcaster, job)

    for client in (*admins, alice):
        [event] = client.read(1)
        assert event["event"] == "job"
        assert FeedCursor.parse(event["id"]) == FeedCursor.of(job)  # the id is the feed cursor
        assert event["data"]["jobId"] == "job_a" and event["data"]["userId"] == "alice"
        assert "heartbeat" in event["data"] and "links" in event["data"]  # the API's job view
    assert bob.quiet()


def test_users_see_only_their_own_jobs_admins_see_all(broadcaster: Broadcaster):
    alice, admin = connect(broadcaster, ALICE), connect(broadcaster, ADMIN)
    for job_id, user in (("job_b1", "bob"), ("job_a1", "alice"), ("job_b2", "bob"), ("job_a2", "alice")):
        send(broadcaster, make_job(job_id, user=user))

    assert [e["data"]["jobId"] for e in alice.read(2)] == ["job_a1", "job_a2"]
    assert [e["data"]["jobId"] for e in admin.read(4)] == ["job_b1", "job_a1", "job_b2", "job_a2"]
    assert alice.quiet()


def test_one_tick_is_one_write_per_client(broadcaster: Broadcaster):
    admin, alice = connect(broadcaster, ADMIN), connect(broadcaster, ALICE)
    send(broadcaster, *(make_job(f"job_{i}", user="alice" if i % 2 else "bob") for i in range(6)))

    assert [e["data"]["jobId"] for e in admin.read(6)] == [f"job_{i}" for i in range(6)]
    assert [e["data"]["jobId"] for e in alice.read(3)] == ["job_1", "job_3", "job_5"]
    assert admin.writes == 1 and alice.writes == 1


def test_a_tick_is_built_once_per_audience_and_audiences_go_with_their_last_client(
    broadcaster: Broadcaster,
):
    clients = [connect(broadcaster, p) for p in (ADMIN, Principal("ops2", Role.ADMIN), ALICE, ALICE, BOB)]
    assert broadcaster.stats()["audiences"] == 3  # the admins, alice, bob
    send(broadcaster, make_job("job_a", user="alice"))
    assert [len(c.read(1)) for c in clients[:4]] == [1, 1, 1, 1] and clients[4].quiet()

    for client in clients:
        client.frames.close()  # the browser went away: the server closes its body
    assert broadcaster.stats()["audiences"] == 0 and broadcaster.stats()["clients"] == 0


# ---- filters -------------------------------------------------------------------------------------
def test_filters_narrow_the_stream(broadcaster: Broadcaster):
    running_video = connect(
        broadcaster, ADMIN, StreamFilters.parse({"status": "running", "pipeline": "video"})
    )
    account = connect(broadcaster, ADMIN, StreamFilters.parse({"accountId": "acc-2"}))

    send(broadcaster, make_job("job_1", status=JobStatus.QUEUED))
    send(
        broadcaster, make_job("job_2", status=JobStatus.RUNNING, stage="downloading", pipeline="music_clips")
    )
    send(broadcaster, make_job("job_3", status=JobStatus.RUNNING, stage="downloading", account="acc-2"))

    assert [e["data"]["jobId"] for e in running_video.read(1)] == ["job_3"]
    assert [e["data"]["jobId"] for e in account.read(1)] == ["job_3"]
    assert running_video.quiet() and account.quiet()


def test_a_job_leaving_the_filter_is_still_sent_so_the_page_can_drop_it(broadcaster: Broadcaster):
    running = connect(broadcaster, ADMIN, StreamFilters.parse({"status": "running"}))
    before = JobFacts.of(make_job("job_1", status=JobStatus.RUNNING))

    send(broadcaster, make_job("job_1", status=JobStatus.FAILED, stage="failed"), previous=before)
    send(broadcaster, make_job("job_2", status=JobStatus.FAILED, stage="failed"))  # never matched

    [event] = running.read(1)
    assert event["data"]["jobId"] == "job_1" and event["data"]["status"] == "failed"
    assert running.quiet()


def test_filter_parsing():
    parsed = StreamFilters.parse(
        {"status": "queued, running", "pipeline": "music_clips", "accountId": "acc-1"}
    )
    assert parsed.status == {JobStatus.QUEUED, JobStatus.RUNNING}
    assert StreamFilters.parse({"status": ""}) == ANY
    for bad in ({"status": "sleeping"}, {"pipeline": "nope"}, {"accountId": "no spaces allowed"}):
        with pytest.raises(InvalidInput):
            StreamFilters.parse(bad)


# ---- Last-Event-ID ---------------------------------------------------------------------------------
def test_last_event_id_replays_from_the_store_on_any_instance(
    settings: Settings, source: FakeJobs, stopping: threading.Event
):
    first_instance = Broadcaster(settings, source, clock=utcnow, stopping=stopping.is_set)
    other_instance = Broadcaster(settings, source, clock=utcnow, stopping=stopping.is_set)
    try:
        first = connect(first_instance, ALICE)
        send(first_instance, source.commit(make_job("job_a1", at=later(-1))))
        [seen] = first.read(1)
        first.subscription.subscriber.end()  # the browser goes away...

        source.commit(make_job("job_b1", user="bob", at=later(-0.5)))
        source.commit(make_job("job_a1", status=JobStatus.RUNNING, stage="downloading", at=later(-0.4)))
        source.commit(make_job("job_a2", at=later(-0.3)))

        again = connect(other_instance, ALICE, last_event_id=seen["id"])  # ...and comes back elsewhere
        replayed = again.read(2)
        assert [(e["data"]["jobId"], e["data"]["stage"]) for e in replayed] == [
            ("job_a1", "downloading"),
            ("job_a2", "received"),
        ]
        assert again.quiet()  # bob's job is not replayed to alice
    finally:
        first_instance.close()
        other_instance.close()


def test_replay_sends_jobs_that_left_the_filter_too(broadcaster: Broadcaster, source: FakeJobs):
    """A replay cannot know what a job was before; the page drops rows outside its filters."""
    since = FeedCursor(later(-1)).encode()
    source.commit(make_job("job_1", status=JobStatus.FAILED, stage="failed", at=later(-0.5)))
    client = connect(broadcaster, ADMIN, StreamFilters.parse({"status": "running"}), last_event_id=since)
    assert client.read(1)[0]["data"]["status"] == "failed"


@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [
        ("{old}", "older than the replay window"),
        ("0badf00d-6", "not an event id of this feed"),
        ("not-an-id", "not an event id of this feed"),
        ("{future}", "an event id from the future"),
        ("{recent}", "more changes than a replay sends"),  # 7 changes, replay sends at most 5
    ],
)
def test_an_id_the_feed_cannot_answer_gets_a_reset(
    broadcaster: Broadcaster, source: FakeJobs, last_event_id: str, reason: str
):
    for i in range(7):
        source.commit(make_job(f"job_{i}", at=later(-1 + i / 100)))
    cursors = {
        "old": FeedCursor(later(-3600)).encode(),
        "future": FeedCursor(later(3600)).encode(),
        "recent": FeedCursor(later(-2)).encode(),
    }
    client = connect(broadcaster, ADMIN, last_event_id=last_event_id.format(**cursors))
    [reset] = client.read(1)
    assert reset["event"] == "reset" and reset["data"]["reason"] == reason
    # Its id is the feed's head, so the browser resumes from there on its next reconnect.
    assert FeedCursor.parse(reset["id"]) is not None
    assert client.quiet()


# ---- slow clients, capacity, shutdown ------------------------------------------------------------
def test_a_slow_client_is_dropped_without_holding_up_the_others(broadcaster: Broadcaster, settings: Settings):
    slow = connect(broadcaster, ADMIN)  # never reads again
    fast = connect(broadcaster, ADMIN)
    received: list[dict[str, Any]] = []
    total = settings.sse_client_queue_size * 3
    for i in range(total):
        send(broadcaster, make_job(f"job_{i}"))
        received += fast.read(1)  # the fast client keeps up

    assert [e["data"]["jobId"] for e in received] == [f"job_{i}" for i in range(total)]
    assert slow.subscription.subscriber.dropped
    assert broadcaster.stats()["dropped"] == 1 and broadcaster.stats()["clients"] == 1
    # Its stream ends rather than serving a backlog it can no longer keep up with.
    assert list(slow.frames) == []


def test_streams_beyond_the_limit_are_refused(broadcaster: Broadcaster, settings: Settings):
    clients = [connect(broadcaster, ADMIN) for _ in range(settings.sse_max_streams)]
    with pytest.raises(StreamUnavailable):
        broadcaster.subscribe(ADMIN, ANY)
    clients[0].subscription.subscriber.end()
    assert list(clients[0].frames) == []  # ending it unsubscribes...
    connect(broadcaster, ADMIN)  # ...so there is room again


@pytest.mark.parametrize(
    ("max_streams", "threads", "reserved", "capacity"),
    [(1000, 1032, 16, 1000), (1000, 32, 4, 28), (10, 64, 4, 10), (1000, 2, 4, 1)],
)
def test_streams_never_take_every_server_thread(max_streams, threads, reserved, capacity):
    settings = Settings(sse_max_streams=max_streams, threads=threads, sse_reserved_threads=reserved)
    assert stream_capacity(settings) == capacity


def test_close_ends_every_stream_and_stops_the_feed(broadcaster: Broadcaster, source: FakeJobs):
    clients = [connect(broadcaster, ADMIN) for _ in range(3)]
    results: list[list[bytes]] = []
    # Each stream runs in its own thread, as under a threaded server, blocked waiting for events.
    threads = [threading.Thread(target=lambda c=c: results.append(list(c.frames))) for c in clients]
    for thread in threads:
        thread.start()

    broadcaster.close()
    for thread in threads:
        thread.join(timeout=10)

    assert not any(t.is_alive() for t in threads)
    assert len(results) == 3 and all(b"event: job" not in b"".join(r) for r in results)
    wait_for(lambda: not broadcaster.feed_running, timeout=10, what="the feed to stop")
    with pytest.raises(StreamUnavailable):
        broadcaster.subscribe(ADMIN, ANY)
    broadcaster.close()  # idempotent


def test_the_server_stopping_closes_the_streams(broadcaster: Broadcaster, stopping: threading.Event):
    client = connect(broadcaster, ADMIN)
    done = threading.Event()
    threading.Thread(target=lambda: (list(client.frames), done.set())).start()

    stopping.set()  # what SIGTERM does to a gunicorn worker, as server_is_stopping sees it

    wait_for(done.is_set, timeout=10, what="the stream to end")
    assert broadcaster.closed


# ---- the feed ----------------------------------------------------------------------------------------
def test_the_feed_runs_only_while_a_stream_is_open(broadcaster: Broadcaster, source: FakeJobs):
    assert not broadcaster.feed_running and source.reads == 0  # nothing open: nothing read
    client = connect(broadcaster, ADMIN)
    assert broadcaster.feed_running

    job = source.commit(make_job("job_1", at=later(0.001)))
    assert client.read(1)[0]["data"]["jobId"] == job.job_id  # the feed found it by itself

    client.subscription.subscriber.end()
    assert list(client.frames) == []
    wait_for(lambda: not broadcaster.feed_running, timeout=10, what="the feed to stop")
    reads = source.reads
    time.sleep(0.1)  # ten ticks' worth of idle time
    assert source.reads == reads  # stopped: no more reads
    connect(broadcaster, ADMIN)
    assert broadcaster.feed_running and broadcaster.stats()["feedRuns"] == 2


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(seconds: float) -> datetime:
    """``seconds`` after T0 on the feed's manual clock."""
    return T0 + timedelta(seconds=seconds)


def feed_over(source: FakeJobs, settings: Settings, clock: ManualClock) -> tuple[ChangeFeed, list[Change]]:
    sent: list[Change] = []
    return ChangeFeed(settings, source, sent.extend, clock=clock), sent


def test_the_tail_sends_each_change_once(settings: Settings, source: FakeJobs):
    clock = ManualClock(T0)
    feed, sent = feed_over(source, settings, clock)
    source.commit(make_job("job_1", at=T0 + timedelta(seconds=0.1)), T0 + timedelta(seconds=0.1))
    source.commit(make_job("job_2", at=T0 + timedelta(seconds=0.2)), T0 + timedelta(seconds=0.2))
    assert feed.poll() == 2 and [c.job.job_id for c in sent] == ["job_1", "job_2"]
    assert feed.poll() == 0  # nothing new
    moved = make_job("job_1", status=JobStatus.RUNNING, stage="downloading", at=T0 + timedelta(seconds=0.3))
    source.commit(moved, T0 + timedelta(seconds=0.3))
    assert feed.poll() == 1
    assert sent[-1].job.stage == "downloading" and sent[-1].previous == JobFacts.of(make_job("job_1"))
    assert feed.head == FeedCursor.of(moved)


def test_a_commit_that_lands_behind_the_cursor_is_sent_by_the_sweep(settings: Settings, source: FakeJobs):
    clock = ManualClock(T0)
    feed, sent = feed_over(source, settings, clock)
    early = make_job("job_early", at=T0 + timedelta(seconds=1))  # planned first...
    source.commit(make_job("job_fast", at=T0 + timedelta(seconds=2)), T0 + timedelta(seconds=2))
    clock.now = T0 + timedelta(seconds=2.1)
    feed.poll()
    source.commit(early, T0 + timedelta(seconds=2.2))  # ...committed after the tail passed it
    clock.now = T0 + timedelta(seconds=2.5)
    feed.poll()
    assert [c.job.job_id for c in sent] == ["job_fast"]  # not yet: it is inside the commit lag

    clock.now = T0 + timedelta(seconds=1 + settings.sse_commit_lag_seconds + settings.sse_sweep_seconds)
    feed.poll()
    assert [c.job.job_id for c in sent] == ["job_fast", "job_early"]
    clock.now += timedelta(seconds=10)
    feed.poll()  # the sweep reads job_fast's slice too, and sends it no second time
    assert [c.job.job_id for c in sent] == ["job_fast", "job_early"]


def test_a_commit_landing_behind_the_cursor_within_the_holdback_is_sent_by_the_next_tick(
    settings: Settings, source: FakeJobs
):
    clock = ManualClock(T0)
    feed, sent = feed_over(source, settings, clock)
    early = make_job("job_early", at=at(1.0))  # planned first, in flight for 80 ms (under the 100 ms floor)
    source.commit(make_job("job_fast", at=at(1.05)), at(1.05))
    clock.now = at(1.06)
    feed.poll()
    source.commit(early, at(1.08))
    clock.now = at(1.10)
    feed.poll()  # the tail reads from 100 ms back, not from job_fast's 1.05: job_early is in it
    assert [c.job.job_id for c in sent] == ["job_fast", "job_early"] and feed.late_total == 0


def test_the_holdback_follows_the_flights_it_sees_then_forgets_them(settings: Settings, source: FakeJobs):
    clock = ManualClock(T0)
    feed, sent = feed_over(source, settings, clock)
    source.commit(make_job("job_slow", at=at(1.0)), at(1.6))  # a 600 ms flight, nothing passed it
    clock.now = at(1.7)
    feed.poll()
    assert feed.holdback == timedelta(seconds=0.6)

    early = make_job("job_early", at=at(2.0))
    source.commit(make_job("job_fast", at=at(2.1)), at(2.1))
    clock.now = at(2.15)
    feed.poll()
    source.commit(early, at(2.5))  # a 500 ms flight: behind the cursor, inside the hold-back
    clock.now = at(2.55)
    feed.poll()
    assert [c.job.job_id for c in sent] == ["job_slow", "job_fast", "job_early"] and feed.late_total == 0

    clock.now = at(62.55)  # a quiet minute: six half-lives
    feed.poll()
    assert feed.holdback == timedelta(seconds=settings.sse_holdback_floor_seconds)
    assert [c.job.job_id for c in sent] == ["job_slow", "job_fast", "job_early"]  # nothing sent twice


def test_the_holdback_stops_at_its_ceiling_and_the_sweep_finds_the_rest(settings: Settings, source: FakeJobs):
    clock = ManualClock(T0)
    feed, sent = feed_over(source, settings, clock)
    source.commit(make_job("job_slow", at=at(1.0)), at(4.0))  # a 3 s flight
    clock.now = at(4.1)
    feed.poll()
    assert feed.holdback == timedelta(seconds=settings.sse_holdback_ceiling_seconds)

    source.commit(make_job("job_fast", at=at(5.0)), at(5.0))
    clock.now = at(5.1)
    feed.poll()
    source.commit(make_job("job_late", at=at(3.5)), at(5.2))  # 1.7 s: past the ceiling
    clock.now = at(5.3)
    feed.poll()
    assert [c.job.job_id for c in sent] == ["job_slow", "job_fast"]
    clock.now = at(3.5 + settings.sse_commit_lag_seconds + settings.sse_sweep_seconds)
    feed.poll()
    assert [c.job.job_id for c in sent] == ["job_slow", "job_fast", "job_late"] and feed.late_total == 1


def test_a_holdback_ceiling_below_its_floor_is_refused_at_start():
    with pytest.raises(ValidationError, match="SSE_HOLDBACK_CEILING_SECONDS must be at least"):
        Settings(sse_holdback_floor_seconds=0.5, sse_holdback_ceiling_seconds=0.2)


def test_a_burst_larger_than_a_page_is_read_in_one_tick(
    settings: Settings, source: FakeJobs, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(change_feed, "PAGE_SIZE", 3)
    clock = ManualClock(T0)
    feed, sent = feed_over(source, settings, clock)
    for i in range(8):
        at = T0 + timedelta(seconds=0.1 + i / 100)
        source.commit(make_job(f"job_{i}", at=at), at)
    assert feed.poll() == 8 and [c.job.job_id for c in sent] == [f"job_{i}" for i in range(8)]


def test_a_failing_read_keeps_the_streams_and_is_retried(broadcaster: Broadcaster, source: FakeJobs):
    client = connect(broadcaster, ADMIN)
    source.failing = True
    wait_for(lambda: broadcaster.stats()["feedErrors"] > 0, timeout=10, what="a failed read")
    source.failing = False
    source.commit(make_job("job_1", at=later(0.001)))
    assert client.read(1)[0]["data"]["jobId"] == "job_1"
    assert broadcaster.stats()["clients"] == 1


def test_frames_are_single_line_data():
    frame = encode_frame("job", {"message": "two\nlines"}, "abc-1")
    assert frame == b'id: abc-1\nevent: job\ndata: {"message":"two\\nlines"}\n\n'


def test_a_hung_up_client_is_noticed_without_writing_to_it():
    server_side, client_side = socket.socketpair()
    try:
        assert not peer_closed(server_side)  # connected and quiet, as a listening browser is
        client_side.close()
        assert peer_closed(server_side)
    finally:
        server_side.close()


# ---- writing straight to the socket (gunicorn) -------------------------------------------------------
def read_chunks(stream: BinaryIO, count: int) -> list[bytes]:
    """The next ``count`` chunks of an HTTP/1.1 chunked body that are not keepalives (the test
    heartbeat is 50 ms, so one may come between any two ticks), checking the framing on the way."""
    chunks: list[bytes] = []
    while len(chunks) < count:
        size = int(stream.readline().strip(), 16)
        chunk = stream.read(size)
        assert stream.read(2) == b"\r\n"
        if chunk != b": keepalive\n\n":
            chunks.append(chunk)
    return chunks


def read_body_end(stream: BinaryIO) -> bytes:
    """Whatever is left of a chunked body up to its last chunk, checking every chunk's framing;
    keepalives sent before the end are skipped. Returns the terminating chunk."""
    while True:
        size_line = stream.readline()
        size = int(size_line.strip(), 16)
        if size == 0:
            return size_line + stream.read(2)
        assert stream.read(size) == b": keepalive\n\n" and stream.read(2) == b"\r\n"


def serve_as_gunicorn(b: Broadcaster, subscription: Subscription, sock: socket.socket) -> threading.Thread:
    """What gunicorn's gthread worker does with the body: frame each yielded chunk, then end it."""

    def run() -> None:
        for chunk in b.frames(subscription):
            sock.sendall(b"%X\r\n%s\r\n" % (len(chunk), chunk))
        with contextlib.suppress(OSError):
            sock.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_under_gunicorn_the_feed_writes_chunks_to_the_socket_itself(broadcaster: Broadcaster):
    server_end, client_end = socket.socketpair()
    subscription = broadcaster.subscribe(ADMIN, ANY, sock=server_end, chunked=True)
    thread = serve_as_gunicorn(broadcaster, subscription, server_end)
    body = client_end.makefile("rb")  # one buffered reader: a second would lose what this one read ahead
    assert b"event: hello" in read_chunks(body, 1)[0]
    wait_for(lambda: subscription.subscriber.direct, timeout=10, what="the stream to hand over its socket")

    send(broadcaster, make_job("job_1"), make_job("job_2"))
    [batch] = read_chunks(body, 1)  # one chunk per tick, framed as gunicorn frames them
    assert [parse(f)["data"]["jobId"] for f in batch.split(b"\n\n") if f] == ["job_1", "job_2"]

    broadcaster.close()
    thread.join(timeout=10)
    assert read_body_end(body) == b"0\r\n\r\n"  # the server's own end of the body, uncorrupted
    server_end.close()
    client_end.close()


def test_a_socket_that_takes_no_more_is_finished_by_the_stream_thread_or_dropped(
    broadcaster: Broadcaster, settings: Settings
):
    server_end, client_end = socket.socketpair()
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    subscription = broadcaster.subscribe(ADMIN, ANY, sock=server_end, chunked=False)
    thread = serve_as_gunicorn(broadcaster, subscription, server_end)
    client_end.recv(65536)  # hello
    wait_for(lambda: subscription.subscriber.direct, timeout=10, what="the stream to hand over its socket")

    big = make_job("job_big").model_copy(update={"input": {"caption": "x" * 20_000}})
    send(broadcaster, big)  # more than the socket takes at once: the rest waits for its thread
    received = b""
    while received.count(b"event: job") < 1 or not received.endswith(b"\n\n"):
        received += client_end.recv(65536)
    assert received.count(b"event: job") == 1 and not subscription.subscriber.dropped

    # And now the client stops reading. The stream thread may have taken up to a queue's worth of
    # batches into the send it is blocked in; past that, a full queue drops the client.
    for _ in range(2 * settings.sse_client_queue_size + 2):
        send(broadcaster, big)
        if subscription.subscriber.dropped:
            break
    assert subscription.subscriber.dropped and broadcaster.stats()["dropped"] == 1
    thread.join(timeout=10)
    assert not thread.is_alive()
    server_end.close()
    client_end.close()


def test_the_feed_reads_on_while_a_fan_out_is_slow_and_delivers_what_waited_as_one_in_order(
    settings: Settings, source: FakeJobs, stopping: threading.Event
):
    delivered: list[list[str]] = []
    first_started, release = threading.Event(), threading.Event()

    def slow_deliver(changes: list[Change]) -> None:
        first_started.set()
        release.wait(10)  # a fan-out stuck on slow sockets
        delivered.append([c.job.job_id for c in changes])

    feed = ChangeFeed(settings, source, slow_deliver, clock=utcnow)
    runner = threading.Thread(target=feed.run, args=(lambda: True, stopping))
    runner.start()
    try:
        source.commit(make_job("job_1", at=later(0.001)))
        assert first_started.wait(10)
        reads_before = feed.polls_total
        source.commit(make_job("job_2", at=later(0.001)))
        source.commit(make_job("job_3", at=later(0.002)))
        wait_for(lambda: feed.sent_total == 3, timeout=10, what="the feed to read on")
        assert feed.polls_total > reads_before and delivered == []  # read while the fan-out was busy
        release.set()
        wait_for(lambda: len(delivered) == 2, timeout=10, what="the waiting ticks delivered")
        assert delivered == [["job_1"], ["job_2", "job_3"]]
    finally:
        release.set()
        stopping.set()
        runner.join(timeout=10)


def test_an_idle_feed_reads_less_often_and_still_sends_the_next_change(
    settings: Settings, source: FakeJobs, stopping: threading.Event
):
    idle = settings.model_copy(update={"sse_idle_after_seconds": 0.2, "sse_idle_poll_seconds": 0.25})
    sent: list[Change] = []
    feed = ChangeFeed(idle, source, sent.extend, clock=utcnow)
    runner = threading.Thread(target=feed.run, args=(lambda: True, stopping))
    runner.start()
    try:
        time.sleep(0.5)  # idle by now
        polls = feed.polls_total
        time.sleep(1.0)
        # At sse_poll_seconds (10 ms) this second would hold about 100 reads; idle, about 4.
        assert feed.polls_total - polls <= 6
        source.commit(make_job("job_1", at=later(0.001)))
        wait_for(lambda: [c.job.job_id for c in sent] == ["job_1"], timeout=10, what="the next change")
    finally:
        stopping.set()
        runner.join(timeout=10)
