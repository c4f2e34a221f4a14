"""The stream's broadcaster without a database: fan-out, visibility, filters, Last-Event-ID replay,
slow clients, shutdown, and how listener snapshots become events.

The listener is a stand-in with Firestore's on_snapshot contract (callbacks from another thread,
a handle with ``is_active`` and ``unsubscribe``); tests/emulator/test_stream.py runs the real one.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from services.api.stream import (
    Broadcaster,
    JobFacts,
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
from services.jobs.repository import utcnow
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


# ---- a listener stand-in -------------------------------------------------------------------------
@dataclass
class FakeWatch:
    active: bool = True

    @property
    def is_active(self) -> bool:
        return self.active

    def unsubscribe(self) -> None:
        self.active = False


@dataclass
class FakeSource:
    """Each call starts a "listener" whose first snapshot (``initial``) arrives from another thread."""

    initial: list[Job] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)
    watches: list[FakeWatch] = field(default_factory=list)

    def __call__(self, callback: Any) -> FakeWatch:
        self.callbacks.append(callback)
        watch = FakeWatch()
        self.watches.append(watch)
        first = [change("ADDED", job) for job in self.initial]
        threading.Thread(target=callback, args=([], first, utcnow())).start()
        return watch

    def deliver(self, *changes: Any, read_time: datetime | None = None) -> None:
        self.callbacks[-1]([], list(changes), read_time or utcnow())


def change(kind: str, job: Job, update_time: datetime | None = None) -> Any:
    doc = job.to_doc()
    document = SimpleNamespace(id=job.job_id, update_time=update_time or job.updated_at, to_dict=lambda: doc)
    return SimpleNamespace(type=SimpleNamespace(name=kind), document=document)


# ---- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture
def settings() -> Settings:
    return Settings(
        metrics_exporter="none",
        sse_heartbeat_seconds=0.05,
        sse_client_queue_size=8,
        sse_replay_events=5,
        sse_max_streams=10,
        threads=64,
    )


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def stopping() -> threading.Event:
    return threading.Event()


@pytest.fixture
def broadcaster(settings: Settings, source: FakeSource, stopping: threading.Event) -> Iterator[Broadcaster]:
    b = Broadcaster(settings, source, clock=utcnow, stopping=stopping.is_set)
    yield b
    b.close()


@dataclass
class Client:
    subscription: Subscription
    frames: Iterator[bytes]

    def read(self, count: int, *, max_heartbeats: int = 200) -> list[dict[str, Any]]:
        """The next ``count`` events (heartbeats skipped, at most ``max_heartbeats`` of them)."""
        events: list[dict[str, Any]] = []
        for _ in range(count + max_heartbeats):
            if len(events) == count:
                break
            frame = next(self.frames)
            if not frame.startswith(b":"):
                events.append(parse(frame))
        assert len(events) == count, f"got {events}"
        return events

    def quiet(self, heartbeats: int = 3) -> bool:
        """True if the next frames are only heartbeats (nothing was queued for this client)."""
        return all(next(self.frames) == b": keepalive\n\n" for _ in range(heartbeats))


def connect(
    b: Broadcaster, principal: Principal, filters: StreamFilters = ANY, last_event_id: str | None = None
) -> Client:
    subscription = b.subscribe(principal, filters, last_event_id)
    client = Client(subscription, b.frames(subscription))
    hello = parse(next(client.frames))
    assert hello["event"] == "hello" and hello["data"]["subject"] == principal.subject
    return client


def parse(frame: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for line in frame.decode().strip("\n").split("\n"):
        name, _, value = line.partition(": ")
        fields[name] = value
    data = fields.get("data")
    return {"id": fields.get("id"), "event": fields.get("event"), "data": json.loads(data) if data else None}


# ---- fan-out and visibility ----------------------------------------------------------------------
def test_one_change_reaches_every_client_that_may_see_it(broadcaster: Broadcaster):
    admins = [connect(broadcaster, ADMIN), connect(broadcaster, Principal("ops2", Role.ADMIN))]
    alice, bob = connect(broadcaster, ALICE), connect(broadcaster, BOB)

    seq = broadcaster.publish(make_job("job_a", user="alice"))

    for client in (*admins, alice):
        [event] = client.read(1)
        assert event["event"] == "job"
        assert event["id"] == f"{broadcaster.instance_id}-{seq}"
        assert event["data"]["jobId"] == "job_a" and event["data"]["userId"] == "alice"
        assert "heartbeat" in event["data"] and "links" in event["data"]  # the API's job view
    assert bob.quiet()


def test_users_see_only_their_own_jobs_admins_see_all(broadcaster: Broadcaster):
    alice, admin = connect(broadcaster, ALICE), connect(broadcaster, ADMIN)
    for job_id, user in (("job_b1", "bob"), ("job_a1", "alice"), ("job_b2", "bob"), ("job_a2", "alice")):
        broadcaster.publish(make_job(job_id, user=user))

    assert [e["data"]["jobId"] for e in alice.read(2)] == ["job_a1", "job_a2"]
    assert [e["data"]["jobId"] for e in admin.read(4)] == ["job_b1", "job_a1", "job_b2", "job_a2"]
    assert alice.quiet()


def test_event_ids_increase_by_one_per_change(broadcaster: Broadcaster):
    admin = connect(broadcaster, ADMIN)
    for i in range(3):
        broadcaster.publish(make_job(f"job_{i}"))
    ids = [e["id"] for e in admin.read(3)]
    assert [int(i.rsplit("-", 1)[1]) for i in ids] == [1, 2, 3]
    assert {i.rsplit("-", 1)[0] for i in ids} == {broadcaster.instance_id}


# ---- filters -------------------------------------------------------------------------------------
def test_filters_narrow_the_stream(broadcaster: Broadcaster):
    running_video = connect(
        broadcaster, ADMIN, StreamFilters.parse({"status": "running", "pipeline": "video"})
    )
    account = connect(broadcaster, ADMIN, StreamFilters.parse({"accountId": "acc-2"}))

    broadcaster.publish(make_job("job_1", status=JobStatus.QUEUED))
    broadcaster.publish(
        make_job("job_2", status=JobStatus.RUNNING, stage="downloading", pipeline="music_clips")
    )
    broadcaster.publish(make_job("job_3", status=JobStatus.RUNNING, stage="downloading", account="acc-2"))

    assert [e["data"]["jobId"] for e in running_video.read(1)] == ["job_3"]
    assert [e["data"]["jobId"] for e in account.read(1)] == ["job_3"]
    assert running_video.quiet() and account.quiet()


def test_a_job_leaving_the_filter_is_still_sent_so_the_page_can_drop_it(broadcaster: Broadcaster):
    running = connect(broadcaster, ADMIN, StreamFilters.parse({"status": "running"}))
    before = JobFacts.of(make_job("job_1", status=JobStatus.RUNNING))

    broadcaster.publish(make_job("job_1", status=JobStatus.FAILED, stage="failed"), previous=before)
    broadcaster.publish(make_job("job_2", status=JobStatus.FAILED, stage="failed"))  # never matched

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
def test_last_event_id_replays_what_the_client_missed_and_may_see(broadcaster: Broadcaster):
    first = connect(broadcaster, ALICE)
    broadcaster.publish(make_job("job_a1", user="alice"))
    [seen] = first.read(1)
    first.subscription.subscriber.end()  # the browser goes away...

    broadcaster.publish(make_job("job_b1", user="bob"))
    broadcaster.publish(make_job("job_a1", user="alice", status=JobStatus.RUNNING, stage="downloading"))
    broadcaster.publish(make_job("job_a2", user="alice"))

    again = connect(broadcaster, ALICE, last_event_id=seen["id"])  # ...and comes back
    replayed = again.read(2)
    assert [(e["data"]["jobId"], e["data"]["stage"]) for e in replayed] == [
        ("job_a1", "downloading"),
        ("job_a2", "received"),
    ]
    broadcaster.publish(make_job("job_a3", user="alice"))  # and then it is live again
    assert again.read(1)[0]["data"]["jobId"] == "job_a3"


def test_replay_from_the_latest_id_sends_nothing(broadcaster: Broadcaster):
    seq = broadcaster.publish(make_job("job_1"))
    client = connect(broadcaster, ADMIN, last_event_id=f"{broadcaster.instance_id}-{seq}")
    assert client.quiet()


@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [
        ("{instance}-1", "older than the replay buffer"),  # buffer holds 5: seqs 3..7 remain
        ("0badf00d-6", "another instance's event id"),
        ("{instance}-99", "an event id this instance never sent"),
        ("not-an-id", "another instance's event id"),
    ],
)
def test_an_id_the_buffer_cannot_answer_gets_a_reset(
    broadcaster: Broadcaster, last_event_id: str, reason: str
):
    for i in range(7):
        broadcaster.publish(make_job(f"job_{i}"))
    client = connect(broadcaster, ADMIN, last_event_id=last_event_id.format(instance=broadcaster.instance_id))
    [reset] = client.read(1)
    assert reset["event"] == "reset" and reset["data"]["reason"] == reason
    # Its id is the newest event's, so the browser resumes from there on its next reconnect.
    assert reset["id"] == f"{broadcaster.instance_id}-7"
    assert client.quiet()


def test_the_oldest_buffered_id_still_replays(broadcaster: Broadcaster):
    for i in range(7):
        broadcaster.publish(make_job(f"job_{i}"))
    # Buffer holds seqs 3..7; a client that saw 2 missed only buffered events.
    client = connect(broadcaster, ADMIN, last_event_id=f"{broadcaster.instance_id}-2")
    assert [e["data"]["jobId"] for e in client.read(5)] == [f"job_{i}" for i in range(2, 7)]


# ---- slow clients, capacity, shutdown ------------------------------------------------------------
def test_a_slow_client_is_dropped_without_holding_up_the_others(broadcaster: Broadcaster, settings: Settings):
    slow = connect(broadcaster, ADMIN)  # never reads again
    fast = connect(broadcaster, ADMIN)
    received: list[dict[str, Any]] = []
    total = settings.sse_client_queue_size * 3
    for i in range(total):
        broadcaster.publish(make_job(f"job_{i}"))
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


def test_close_ends_every_stream_and_stops_the_listener(broadcaster: Broadcaster, source: FakeSource):
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
    assert source.watches[0].active is False
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


# ---- from listener snapshots to events -------------------------------------------------------------
def test_first_snapshot_is_the_baseline_and_later_changes_are_sent(
    settings: Settings, stopping: threading.Event
):
    source = FakeSource(initial=[make_job("job_old", at=T0)])
    b = Broadcaster(settings, source, clock=utcnow, stopping=stopping.is_set)
    try:
        admin = connect(b, ADMIN)  # waits for the first snapshot
        assert b.stats()["lastSeq"] == 0  # the baseline is not broadcast: pages fetch it

        moved = make_job(
            "job_old", status=JobStatus.RUNNING, stage="downloading", at=T0 + timedelta(seconds=1)
        )
        source.deliver(
            change("MODIFIED", moved), change("ADDED", make_job("job_new", at=T0 + timedelta(seconds=2)))
        )
        events = admin.read(2)
        assert [(e["data"]["jobId"], e["data"]["stage"]) for e in events] == [
            ("job_old", "downloading"),
            ("job_new", "received"),
        ]
    finally:
        b.close()


def test_removed_and_already_seen_changes_are_not_sent(broadcaster: Broadcaster, source: FakeSource):
    admin = connect(broadcaster, ADMIN)
    job = make_job("job_1", at=T0 + timedelta(seconds=1))
    source.deliver(change("ADDED", job))
    assert admin.read(1)[0]["data"]["jobId"] == "job_1"

    source.deliver(change("MODIFIED", job))  # same update time: a repeat
    source.deliver(change("REMOVED", job))  # it left the listener's window
    source.deliver(change("ADDED", make_job("job_1", at=T0)))  # older than what was sent
    assert admin.quiet()


def test_the_previous_version_travels_with_the_change(broadcaster: Broadcaster, source: FakeSource):
    """A status-filtered client hears that a job left its filter (see the filter test above)."""
    running = connect(broadcaster, ADMIN, StreamFilters.parse({"status": "running"}))
    source.deliver(change("ADDED", make_job("job_1", status=JobStatus.RUNNING, stage="downloading")))
    source.deliver(
        change("MODIFIED", make_job("job_1", status=JobStatus.FAILED, stage="failed", at=T0 + timedelta(1)))
    )
    assert [e["data"]["status"] for e in running.read(2)] == ["running", "failed"]


def test_a_restarted_listener_sends_only_what_changed_while_it_was_down(
    broadcaster: Broadcaster, source: FakeSource
):
    admin = connect(broadcaster, ADMIN)
    still = make_job("job_still", at=T0 + timedelta(seconds=1))
    moved = make_job("job_moved", at=T0 + timedelta(seconds=1))
    source.deliver(change("ADDED", still), change("ADDED", moved), read_time=T0 + timedelta(seconds=2))
    assert len(admin.read(2)) == 2

    broadcaster.restart_listener()
    moved_later = make_job(
        "job_moved", status=JobStatus.RUNNING, stage="downloading", at=T0 + timedelta(seconds=5)
    )
    born = make_job("job_born", at=T0 + timedelta(seconds=6))
    # The new listener's first snapshot holds the whole window again.
    source.deliver(change("ADDED", still), change("ADDED", moved_later), change("ADDED", born))

    assert [(e["data"]["jobId"], e["data"]["stage"]) for e in admin.read(2)] == [
        ("job_moved", "downloading"),
        ("job_born", "received"),
    ]
    assert admin.quiet()
    assert source.watches[0].active is False and broadcaster.stats()["listenerRestarts"] == 1


def test_the_supervisor_restarts_a_listener_that_died(broadcaster: Broadcaster, source: FakeSource):
    connect(broadcaster, ADMIN)
    source.watches[0].active = False  # the RPC ended for good: Firestore's Watch closes itself

    wait_for(lambda: len(source.watches) == 2, timeout=15, what="a new listener")
    assert broadcaster.listener_active and broadcaster.stats()["listenerRestarts"] == 1


def test_a_listener_that_cannot_start_is_retried(settings: Settings, stopping: threading.Event):
    attempts: list[int] = []
    working = FakeSource()

    def flaky(callback: Any) -> FakeWatch:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("firestore unreachable")
        return working(callback)

    b = Broadcaster(settings, flaky, clock=utcnow, stopping=stopping.is_set)
    try:
        b.start()
        wait_for(lambda: b.listener_active, timeout=15, what="the listener to start on its second try")
        assert len(attempts) == 2
    finally:
        b.close()


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
