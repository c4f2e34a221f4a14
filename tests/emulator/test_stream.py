"""GET /api/stream over real HTTP against the Firestore emulator: one change feed for every client,
who sees what, Last-Event-ID after a reconnect to another instance, a client that stops reading, a
feed read that fails, and SIGTERM under functions-framework (the deployed server)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from pydantic import SecretStr

from devtools.local.serve import BackgroundServer
from infra import emulators as emu
from services.api import create_app
from services.api.change_feed import Change, ChangeSource, FeedCursor, firestore_changes
from services.api.stream import STREAM_EXTENSION, Broadcaster
from services.auth import mint_token
from services.jobs.models import Job, JobCreate
from services.jobs.repository import utcnow
from services.jobs.state_machine import Transition
from services.runtime import Runtime
from services.settings import Settings
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
END = object()


# ---- a small SSE client on a raw socket ------------------------------------------------------------
class SseClient:
    """HTTP/1.0, so the body is the bare event stream; a reader thread parses it into events.
    ``close()`` shuts the socket down, which is what unblocks a read in another thread."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        headers: dict[str, str] | None = None,
        ticket: str | None = None,
        **params: str,
    ) -> None:
        """Authenticated by ``token`` (a Bearer header) or, as a browser is, by a one-time ``ticket``."""
        url = urlsplit(base_url)
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=60)
        query = urlencode({**params, **({"ticket": ticket} if ticket else {})})
        lines = [f"GET /api/stream?{query} HTTP/1.0", f"Host: {url.netloc}", "Accept: text/event-stream"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        while self.file.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.events: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in self.file:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if "event" in fields:
                    data = json.loads(fields["data"]) if "data" in fields else None
                    self.events.put({"id": fields.get("id"), "event": fields["event"], "data": data})
                fields = {}
        except OSError:
            pass
        finally:
            self.events.put(END)

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        event = self.events.get(timeout=timeout)
        assert event is not END, "the stream ended"
        return dict(event)

    def hello(self) -> dict[str, Any]:
        event = self.next()
        assert event["event"] == "hello", event
        return event

    def next_job(self, timeout: float = 30.0) -> dict[str, Any]:
        event = self.next(timeout)
        assert event["event"] == "job", event
        return event

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=10)
        self.sock.close()


# ---- fixtures --------------------------------------------------------------------------------------
@dataclass
class CountingSource:
    """The Firestore change source, counted, and able to fail as an unreachable Firestore does."""

    inner: ChangeSource
    reads: int = 0
    failing: bool = False

    def __call__(self, after: FeedCursor, *, until: Any = None, limit: int) -> Any:
        if self.failing:
            raise ConnectionError("firestore unreachable")
        self.reads += 1
        return self.inner(after, until=until, limit=limit)


@dataclass
class Served:
    url: str
    rt: Runtime
    broadcaster: Broadcaster
    source: CountingSource

    def token(self, sub: str, role: str = "user") -> str:
        return mint_token(self.rt.settings, sub, role)

    def connect(self, sub: str, role: str = "user", **kwargs: Any) -> SseClient:
        client = SseClient(self.url, self.token(sub, role), **kwargs)
        assert client.status == 200
        return client


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    tuned = settings.model_copy(
        update={
            "jwt_secret": SecretStr("emulator-stream-tests-secret-of-enough-length"),
            "sse_heartbeat_seconds": 0.5,
            "sse_client_queue_size": 16,
            "threads": 64,  # werkzeug's server has a thread per connection; this only lifts the cap
        }
    )
    return Runtime(tuned, clients)


@pytest.fixture
def served(rt: Runtime) -> Iterator[Served]:
    app = create_app(rt)
    source = CountingSource(firestore_changes(rt))
    broadcaster = Broadcaster(rt.settings, source, clock=utcnow)
    app.extensions[STREAM_EXTENSION] = broadcaster
    with BackgroundServer(app) as server:
        yield Served(server.url, rt, broadcaster, source)
        broadcaster.close()  # ends the streams, so the server's threads can finish


def make_job(rt: Runtime, user: str = "alice", source: str = "src-1") -> Job:
    job, _ = rt.repo.create_job(
        JobCreate(pipeline="video", account_id="acc-1", scenario_id="scn-1", source_id=source, user_id=user),
        actor="test",
    )
    return job


def move(rt: Runtime, job: Job, stage: str) -> None:
    assert rt.repo.transition(job.job_id, Transition(to_stage=stage, actor="test")).applied


def cursor_of(event: dict[str, Any]) -> FeedCursor:
    cursor = FeedCursor.parse(event["id"])
    assert cursor is not None, event
    return cursor


# ---- tests -----------------------------------------------------------------------------------------
def test_one_feed_serves_every_client_that_may_see_the_job(served: Served):
    admin, alice, bob = served.connect("ops", "admin"), served.connect("alice"), served.connect("bob")
    for client in (admin, alice, bob):
        client.hello()

    job = make_job(served.rt, user="alice")
    created = [admin.next_job(), alice.next_job()]
    move(served.rt, job, "downloading")
    moved = [admin.next_job(), alice.next_job()]

    for first, second in zip(created, moved, strict=True):
        assert (first["data"]["jobId"], first["data"]["stage"]) == (job.job_id, "received")
        assert (second["data"]["jobId"], second["data"]["stage"]) == (job.job_id, "downloading")
        assert cursor_of(second) > cursor_of(first)
    # Bob's first event is his own job: alice's never reached him.
    bobs = make_job(served.rt, user="bob", source="src-2")
    assert bob.next_job()["data"]["jobId"] == bobs.job_id
    assert served.broadcaster.stats()["feedRuns"] == 1  # one feed, however many clients
    for client in (admin, alice, bob):
        client.close()


def test_a_reconnect_to_another_instance_with_last_event_id_misses_nothing(served: Served):
    client = served.connect("alice")
    client.hello()
    job = make_job(served.rt)
    other = make_job(served.rt, source="src-2")
    first = client.next_job()
    assert client.next_job()["data"]["jobId"] == other.job_id
    client.close()  # the browser loses its connection...

    move(served.rt, job, "downloading")
    make_job(served.rt, user="bob", source="src-3")  # not alice's: never replayed to her
    move(served.rt, job, "downloaded")

    # ...and EventSource retries, through the load balancer, to another instance.
    elsewhere = Broadcaster(served.rt.settings, firestore_changes(served.rt), clock=utcnow)
    app = create_app(served.rt)
    app.extensions[STREAM_EXTENSION] = elsewhere
    with BackgroundServer(app) as server:
        again = SseClient(server.url, served.token("alice"), headers={"Last-Event-ID": first["id"]})
        again.hello()
        replayed = [again.next_job() for _ in range(2)]
        # The job's latest version (the page keeps the newest) and the other job again, since the
        # replay starts a commit lag before the id; Bob's job is not among them.
        assert {(e["data"]["jobId"], e["data"]["stage"]) for e in replayed} == {
            (job.job_id, "downloaded"),
            (other.job_id, "received"),
        }
        move(served.rt, job, "processing")
        assert again.next_job()["data"]["stage"] == "processing"  # then live, on this instance
        again.close()
        elsewhere.close()


def test_a_page_opens_and_reopens_the_stream_with_one_time_tickets(served: Served):
    """What the dashboard does: a ticket per connection (stored in Firestore), and on reopen the
    last event id in the query, since it reconnects itself rather than let EventSource retry."""

    def ticket(sub: str) -> str:
        response = requests.post(
            f"{served.url}/api/stream/tickets",
            headers={"Authorization": f"Bearer {served.token(sub)}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["ticket"])

    first_ticket = ticket("alice")
    client = SseClient(served.url, None, ticket=first_ticket)
    assert client.status == 200 and client.hello()["data"]["subject"] == "alice"
    job = make_job(served.rt)
    first = client.next_job()
    client.close()
    move(served.rt, job, "downloading")  # while no stream is open: the replay reads it from Firestore

    # The spent ticket opens nothing, here or on any instance: it is gone from Firestore.
    spent = SseClient(served.url, None, ticket=first_ticket)
    assert spent.status == 401
    spent.close()
    again = SseClient(served.url, None, ticket=ticket("alice"), lastEventId=first["id"])
    assert again.status == 200
    again.hello()
    assert again.next_job()["data"]["stage"] == "downloading"
    again.close()
    # Bob's ticket shows Bob's jobs only.
    bob = SseClient(served.url, None, ticket=ticket("bob"))
    bob.hello()
    bobs = make_job(served.rt, user="bob", source="src-2")
    move(served.rt, job, "downloaded")
    assert bob.next_job()["data"]["jobId"] == bobs.job_id
    bob.close()


@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [("0badf00d-12", "not an event id of this feed"), ("1000000-job_1", "older than the replay window")],
)
def test_an_id_the_feed_cannot_replay_gets_a_reset(served: Served, last_event_id: str, reason: str):
    client = served.connect("alice", lastEventId=last_event_id)
    client.hello()
    reset = client.next()
    assert reset["event"] == "reset" and reset["data"]["reason"] == reason
    client.close()


def test_a_client_that_stops_reading_is_dropped_and_the_others_get_everything(served: Served):
    fast = served.connect("ops", "admin")
    fast.hello()
    # A browser tab frozen in the background: it connects, then never reads. A tiny receive buffer
    # makes the server's writes block soon.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    slow.connect((urlsplit(served.url).hostname, urlsplit(served.url).port))
    bearer = f"Authorization: Bearer {served.token('ops', 'admin')}"
    slow.sendall(f"GET /api/stream HTTP/1.0\r\nHost: x\r\n{bearer}\r\n\r\n".encode())
    wait_for(lambda: served.broadcaster.stats()["clients"] == 2, what="both clients to subscribe")

    template = make_job(served.rt)
    fast.next_job()
    padded = template.model_copy(update={"input": {"caption": "x" * 8000}})
    sent = 0
    while served.broadcaster.stats()["dropped"] == 0:
        assert sent < 5000, "the slow client was never dropped"
        served.broadcaster.publish([Change(padded, None)])
        sent += 1
        assert fast.next_job()["data"]["jobId"] == padded.job_id  # the fast client gets every event

    assert served.broadcaster.stats()["clients"] == 1
    # The server shut the slow client's socket: reading now drains what was sent, then ends.
    slow.settimeout(30)
    with contextlib.suppress(ConnectionResetError):
        while slow.recv(65536):
            pass
    slow.close()
    served.broadcaster.publish([Change(padded, None)])
    assert fast.next_job()["data"]["jobId"] == padded.job_id
    fast.close()


def test_a_client_that_hangs_up_is_unsubscribed(served: Served):
    client = served.connect("alice")
    client.hello()
    wait_for(lambda: served.broadcaster.stats()["clients"] == 1, what="the client to subscribe")
    client.close()
    wait_for(lambda: served.broadcaster.stats()["clients"] == 0, what="the server to notice the hang-up")


def test_a_feed_read_that_fails_is_retried_and_the_change_still_arrives(served: Served):
    client = served.connect("alice")
    client.hello()
    job = make_job(served.rt)
    client.next_job()

    served.source.failing = True  # Firestore unreachable for a while
    move(served.rt, job, "downloading")
    wait_for(lambda: served.broadcaster.stats()["feedErrors"] > 0, what="a failed read")
    served.source.failing = False

    event = client.next_job()
    assert (event["data"]["jobId"], event["data"]["stage"]) == (job.job_id, "downloading")
    assert served.broadcaster.stats()["clients"] == 1  # the stream stayed open throughout
    client.close()


def test_sigterm_under_functions_framework_ends_the_streams_cleanly(rt: Runtime, tmp_path: Path):
    """Cloud Run sends SIGTERM; gunicorn would wait its graceful timeout (30 s) for streams that
    never end by themselves, then kill the worker and cut them. They must end cleanly instead."""
    port = emu.free_port()
    settings = rt.settings
    assert settings.jwt_secret is not None and settings.firestore_emulator_host
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": settings.google_cloud_project,
        "FIRESTORE_EMULATOR_HOST": settings.firestore_emulator_host,
        "COLLECTION_PREFIX": settings.collection_prefix,
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "TRACE_EXPORTER": "none",
        "METRICS_EXPORTER": "none",
        "SSE_HEARTBEAT_SECONDS": "1",
    }
    argv = [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "functions" / "api.py"),
            "--target", "api", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), timeout=60, what=f"the API to start (see {log})")
        token = mint_token(settings, "ops", "admin")
        # requests speaks HTTP/1.1: the body is chunked, and a stream that is cut rather than ended
        # raises (no terminating chunk), so finishing the loop below means a clean end.
        with requests.get(
            f"{url}/api/stream", headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=25
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith(b"retry:") and next(lines).startswith(b"id: ")
            assert next(lines) == b"event: hello"
            proc.send_signal(signal.SIGTERM)
            rest = list(lines)
        assert all(line.startswith(b":") or not line or line.startswith(b"data:") for line in rest)
        assert proc.wait(timeout=25) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
