"""GET /api/stream: job changes as server-sent events, fed by ONE Firestore listener per instance.

    listener (on_snapshot, the most recently updated jobs) -> Broadcaster -> one bounded queue per
    connected client -> that client's response generator

- Who sees what: admins every job, users their own (job.userId == token sub); the query string
  narrows further (``status`` (comma-separated), ``pipeline``, ``accountId``). A change is sent when
  the job matches the filters before or after it, so a page can drop a row that left its filter.
- Event ids are ``<instance>-<seq>``: monotonic per instance. A reconnecting browser sends
  Last-Event-ID (or ``?lastEventId=`` when the page reopens the stream itself); the events after it
  are replayed from a bounded buffer. An id from another instance, or older than the buffer, gets a
  ``reset`` event instead: the page refetches.
- A comment every ``sse_heartbeat_seconds`` keeps proxies from closing an idle stream (and finds
  clients that went away). A client that falls ``sse_client_queue_size`` events behind is dropped
  (its socket shut) without slowing anyone else; it reconnects and replays.
- Shutdown (``Broadcaster.close``, or the server stopping) ends every stream cleanly, so the
  server's graceful stop is not held up by streams that would never end by themselves.

Auth: the usual headers, or, for EventSource (which cannot send headers), ``?ticket=``: a one-time
ticket from POST /api/stream/tickets (services/api/stream_tickets.py), so no bearer token is ever
put in a URL. The ticket is removed from the request before tracing or logging sees the URL
(``_hide_ticket``) all the same; see docs/decisions/0006-live-dashboard.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import select
import signal
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import flask
from flask.blueprints import BlueprintSetupState
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from werkzeug.wsgi import ClosingIterator

from services.api.routing import current_runtime
from services.api.schemas import JobView
from services.api.stream_tickets import TICKET_PARAM, redeem_ticket
from services.auth import SETTINGS_EXTENSION, Principal, authenticate
from services.errors import InvalidInput, JobtrailError
from services.jobs.models import Job
from services.jobs.repository import utcnow
from services.pipelines.registry import PIPELINES
from services.pipelines.spec import JobStatus
from services.runtime import Runtime
from services.settings import Settings

log = logging.getLogger("jobtrail.stream")

STREAM_EXTENSION = "jobtrail.stream"
_TICKET_ENVIRON_KEY = "jobtrail.stream_ticket"
STREAM_PATH = "/api/stream"
# EventSource waits this long before reconnecting after the stream ends.
RETRY_MS = 3000
# How long the first subscriber waits for the listener's first snapshot, so that everything
# committed after its "hello" is sent (the page fetches its first rows after "hello").
FIRST_SNAPSHOT_WAIT_SECONDS = 10.0
SUPERVISE_EVERY_SECONDS = 0.5
RESTART_BACKOFF_MAX_SECONDS = 30.0
_ID_PART = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"

stream_blueprint = flask.Blueprint("stream", __name__)


class StreamUnavailable(JobtrailError):
    code = "STREAM_UNAVAILABLE"
    http_status = 503


# ---- what a client asked for -------------------------------------------------------------------
@dataclass(frozen=True)
class JobFacts:
    """The fields visibility and filters look at."""

    user_id: str
    status: str
    pipeline: str
    account_id: str

    @classmethod
    def of(cls, job: Job) -> JobFacts:
        return cls(
            user_id=job.user_id, status=job.status.value, pipeline=job.pipeline, account_id=job.account_id
        )


class StreamFilters(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: frozenset[JobStatus] | None = None
    pipeline: str | None = None
    accountId: str | None = Field(None, pattern=_ID_PART)

    @field_validator("status", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip()) or None
        return value

    @field_validator("pipeline")
    @classmethod
    def _known_pipeline(cls, value: str | None) -> str | None:
        if value is not None and value not in PIPELINES:
            raise ValueError(f"unknown pipeline; one of {sorted(PIPELINES)}")
        return value

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> StreamFilters:
        wanted = {name: args[name] for name in ("status", "pipeline", "accountId") if args.get(name)}
        try:
            return cls.model_validate(wanted)
        except ValidationError as exc:
            problems = exc.errors(include_url=False, include_context=False, include_input=False)
            raise InvalidInput("invalid stream filters", problems=problems) from None

    def matches(self, facts: JobFacts) -> bool:
        return (
            (self.status is None or facts.status in self.status)
            and (self.pipeline is None or facts.pipeline == self.pipeline)
            and (self.accountId is None or facts.account_id == self.accountId)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "status": sorted(self.status) if self.status else None,
            "pipeline": self.pipeline,
            "accountId": self.accountId,
        }


@dataclass(frozen=True)
class StreamEvent:
    seq: int
    job_id: str
    facts: JobFacts
    previous: JobFacts | None  # the job as this instance last saw it, if it did
    frame: bytes  # encoded once, shared by every client


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    filters: StreamFilters
    queue: queue.Queue[bytes | None]
    # The connection's socket, when the server exposes it: shutting it down is how a client that
    # stopped reading is dropped (its thread is stuck in send() until then).
    sock: socket.socket | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False

    def wants(self, event: StreamEvent) -> bool:
        facts = event.facts
        if not (self.principal.is_admin or facts.user_id == self.principal.subject):
            return False
        return self.filters.matches(facts) or (
            event.previous is not None and self.filters.matches(event.previous)
        )

    def end(self) -> None:
        """Stop this client's stream at its next step (nothing more is queued for it)."""
        self.ended.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            self.shut_socket()

    def shut_socket(self) -> None:
        if self.sock is not None:
            # OSError: already closed by the client or the server.
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class Subscription:
    subscriber: Subscriber
    hello: dict[str, Any]
    replay: list[bytes]
    reset: bytes | None


# ---- where changes come from -------------------------------------------------------------------
SnapshotCallback = Callable[[list[Any], list[Any], datetime], None]


class WatchHandle(Protocol):
    @property
    def is_active(self) -> bool: ...

    def unsubscribe(self) -> None: ...


class JobSource(Protocol):
    """Starts a listener on recently updated jobs (Firestore's on_snapshot contract)."""

    def __call__(self, callback: SnapshotCallback) -> WatchHandle: ...


def firestore_source(rt: Runtime) -> JobSource:
    def watch(callback: SnapshotCallback) -> WatchHandle:
        handle: WatchHandle = rt.repo.watch_jobs(callback, window=rt.settings.sse_listen_window)
        return handle

    return watch


@dataclass
class _Seen:
    update_time: datetime
    facts: JobFacts


# ---- the broadcaster -----------------------------------------------------------------------------
class Broadcaster:
    """Fans the instance's one job listener out to every connected client; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        source: JobSource,
        *,
        clock: Callable[[], datetime],
        stopping: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.clock = clock
        self.instance_id = secrets.token_hex(4)
        self._stopping = stopping or server_is_stopping
        self._lock = threading.Lock()
        self._seq = 0
        self._buffer: deque[StreamEvent] = deque(maxlen=settings.sse_replay_events)
        self._subscribers: set[Subscriber] = set()
        self._closed = threading.Event()
        # Listener state; the callback runs on the listener's own thread.
        self._listen_lock = threading.Lock()
        self._watch: WatchHandle | None = None
        self._generation = 0
        self._ready = threading.Event()
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._last_read_time: datetime | None = None
        self._supervisor: threading.Thread | None = None
        self.max_streams = stream_capacity(settings)
        self.dropped_total = 0
        self.restarts_total = 0

    # ---- clients -------------------------------------------------------------------------------
    def subscribe(
        self,
        principal: Principal,
        filters: StreamFilters,
        last_event_id: str | None = None,
        sock: socket.socket | None = None,
    ) -> Subscription:
        if self._closed.is_set():
            raise StreamUnavailable("the stream is shutting down; reconnect")
        self.start()
        if not self._ready.wait(FIRST_SNAPSHOT_WAIT_SECONDS):
            log.warning("stream listener has no first snapshot yet; serving the client anyway")
        subscriber = Subscriber(principal, filters, queue.Queue(self.settings.sse_client_queue_size), sock)
        with self._lock:
            if self._closed.is_set():
                raise StreamUnavailable("the stream is shutting down; reconnect")
            if len(self._subscribers) >= self.max_streams:
                raise StreamUnavailable("this instance holds as many streams as it may; retry shortly")
            replay, reset = self._replay_for(subscriber, last_event_id)
            self._subscribers.add(subscriber)
        hello = {
            "instance": self.instance_id,
            "subject": principal.subject,
            "role": principal.role.value,
            "filters": filters.describe(),
            "staleAfterSeconds": self.settings.stale_after_seconds,
            "heartbeatSeconds": self.settings.sse_heartbeat_seconds,
            "pipelines": sorted(PIPELINES),
            "statuses": [s.value for s in JobStatus],
        }
        return Subscription(subscriber, hello, replay, reset)

    def _replay_for(
        self, subscriber: Subscriber, last_event_id: str | None
    ) -> tuple[list[bytes], bytes | None]:
        """Under the lock: what a reconnecting client missed, or a reset if that is unknowable."""
        if not last_event_id:
            return [], None
        instance, _, seq_text = last_event_id.strip().rpartition("-")
        oldest = self._buffer[0].seq if self._buffer else self._seq + 1
        if instance != self.instance_id or not seq_text.isdigit():
            reason = "another instance's event id"
        elif int(seq_text) > self._seq:
            reason = "an event id this instance never sent"
        elif int(seq_text) < oldest - 1:
            reason = "older than the replay buffer"
        else:
            after = int(seq_text)
            return [e.frame for e in self._buffer if e.seq > after and subscriber.wants(e)], None
        return [], encode_frame("reset", {"reason": reason}, self._event_id(self._seq))

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish(self, job: Job, previous: JobFacts | None = None) -> int:
        """Send ``job`` (as it is now) to every client that may see it; returns its event seq."""
        payload = json.dumps(
            JobView.of(job, self.settings, self.clock()).model_dump(mode="json", by_alias=True),
            separators=(",", ":"),
        )
        facts = JobFacts.of(job)
        with self._lock:
            self._seq += 1
            event = StreamEvent(
                self._seq,
                job.job_id,
                facts,
                previous,
                encode_frame("job", payload, self._event_id(self._seq)),
            )
            self._buffer.append(event)
            for subscriber in list(self._subscribers):
                if not subscriber.wants(event):
                    continue
                try:
                    subscriber.queue.put_nowait(event.frame)
                except queue.Full:
                    self._drop(subscriber)
            return event.seq

    def _drop(self, subscriber: Subscriber) -> None:
        """Under the lock: a client too far behind. Its reconnect replays what it missed."""
        self._subscribers.discard(subscriber)
        subscriber.dropped = True
        subscriber.ended.set()
        subscriber.shut_socket()
        self.dropped_total += 1
        log.warning("dropped a stream client %s events behind", subscriber.queue.qsize())

    def _event_id(self, seq: int) -> str:
        return f"{self.instance_id}-{seq}"

    def frames(self, subscription: Subscription) -> Iterator[bytes]:
        """One client's response body. Ends when the client is dropped, on shutdown, or (through
        GeneratorExit, at the next heartbeat at the latest) when the client goes away."""
        subscriber = subscription.subscriber
        heartbeat = self.settings.sse_heartbeat_seconds
        try:
            yield f"retry: {RETRY_MS}\n".encode() + encode_frame("hello", subscription.hello)
            if subscription.reset is not None:
                yield subscription.reset
            yield from subscription.replay
            while not subscriber.ended.is_set():
                try:
                    frame = subscriber.queue.get(timeout=heartbeat)
                except queue.Empty:
                    if subscriber.sock is not None and peer_closed(subscriber.sock):
                        break
                    yield b": keepalive\n\n"
                    continue
                if frame is None or subscriber.ended.is_set():
                    break
                yield frame
        finally:
            self.unsubscribe(subscriber)

    # ---- the listener ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the listener and its supervisor (once; later calls do nothing)."""
        with self._listen_lock:
            if self._supervisor is not None or self._closed.is_set():
                return
            self._open_watch()
            self._supervisor = threading.Thread(target=self._supervise, name="stream-supervisor", daemon=True)
            self._supervisor.start()

    def _open_watch(self) -> None:
        """Under the listen lock."""
        self._generation += 1
        generation = self._generation

        def on_snapshot(docs: list[Any], changes: list[Any], read_time: datetime) -> None:
            self._on_snapshot(generation, changes, read_time)

        try:
            self._watch = self.source(on_snapshot)
        except Exception:
            # Firestore unreachable: the supervisor retries with backoff.
            log.exception("stream listener could not start")

    def _on_snapshot(self, generation: int, changes: list[Any], read_time: datetime) -> None:
        try:
            with self._listen_lock:
                if generation != self._generation or self._closed.is_set():
                    return  # a listener that was replaced or stopped
                first_ever = not self._ready.is_set()
                to_send = self._new_changes(changes, first_ever)
                self._last_read_time = read_time
            for job, previous in to_send:
                self.publish(job, previous)
            self._ready.set()
        except Exception:
            # An exception here would kill the listener's thread; the next snapshot still counts.
            log.exception("stream listener could not handle a snapshot")

    def _new_changes(self, changes: list[Any], first_ever: bool) -> list[tuple[Job, JobFacts | None]]:
        """Under the listen lock: the changes newer than what this instance already sent.

        The very first snapshot is the baseline (the page fetches those jobs itself). A restarted
        listener's first snapshot holds every job in the window again: only the ones that moved
        while it was down are new.
        """
        out: list[tuple[Job, JobFacts | None]] = []
        for change in changes:
            if change.type.name == "REMOVED":
                continue  # left the window (or expired): nothing a client needs
            snapshot = change.document
            seen = self._seen.get(snapshot.id)
            if seen is not None and snapshot.update_time <= seen.update_time:
                continue
            # Unknown to this instance but unchanged since the previous listener's last snapshot
            # (it was evicted from ``_seen``): remember it, send nothing.
            unchanged = (
                seen is None
                and self._last_read_time is not None
                and snapshot.update_time <= self._last_read_time
            )
            try:
                job = Job.model_validate(snapshot.to_dict())
            except ValidationError:
                log.warning("stream listener skipped a job document that does not validate: %s", snapshot.id)
                continue
            facts = JobFacts.of(job)
            self._seen[snapshot.id] = _Seen(snapshot.update_time, facts)
            self._seen.move_to_end(snapshot.id)
            if not (first_ever or unchanged):
                out.append((job, seen.facts if seen else None))
        while len(self._seen) > 4 * self.settings.sse_listen_window:
            self._seen.popitem(last=False)
        return out

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._closed.wait(SUPERVISE_EVERY_SECONDS):
            if self._stopping():
                log.info("server is stopping: closing %d streams", len(self._subscribers))
                self.close()
                return
            if self.listener_active:
                backoff = 1.0
                continue
            log.warning("stream listener is not running; restarting it in %.0fs", backoff)
            if self._closed.wait(backoff):
                return
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX_SECONDS)
            self.restart_listener()

    def restart_listener(self) -> None:
        """Replace the listener (the supervisor does this when it dies); its first snapshot sends
        whatever changed while no listener ran."""
        with self._listen_lock:
            if self._closed.is_set():
                return
            old, self._watch = self._watch, None
            if old is not None:
                _unsubscribe_quietly(old)
            self.restarts_total += 1
            self._open_watch()

    @property
    def listener_active(self) -> bool:
        watch = self._watch
        return watch is not None and watch.is_active

    # ---- shutdown --------------------------------------------------------------------------------
    def close(self) -> None:
        """End every stream and stop the listener. Idempotent."""
        with self._listen_lock:
            if self._closed.is_set():
                return
            self._closed.set()
            watch, self._watch = self._watch, None
        if watch is not None:
            _unsubscribe_quietly(watch)
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), set()
        for subscriber in subscribers:
            subscriber.end()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "instance": self.instance_id,
                "clients": len(self._subscribers),
                "lastSeq": self._seq,
                "buffered": len(self._buffer),
                "dropped": self.dropped_total,
                "listenerRestarts": self.restarts_total,
                "listenerActive": self.listener_active,
            }


def _unsubscribe_quietly(watch: WatchHandle) -> None:
    try:
        watch.unsubscribe()
    except Exception:
        log.warning("stream listener did not close cleanly", exc_info=True)


def stream_capacity(settings: Settings) -> int:
    """How many streams this instance may hold: ``sse_max_streams``, and never so many that the
    server's threads (functions-framework: THREADS, default 4 per CPU) are all held by streams
    with none left for ordinary requests."""
    threads = settings.threads or 4 * (os.cpu_count() or 1)
    return max(1, min(settings.sse_max_streams, threads - settings.sse_reserved_threads))


def peer_closed(sock: socket.socket) -> bool:
    """Whether the client hung up. An SSE client sends nothing after its request, so a readable
    socket means EOF or a reset. Without this, the first write after a hang-up still succeeds and
    only the second fails: a departed client would hold its thread for two heartbeats."""
    try:
        poller = select.poll()  # not select(): a busy server has descriptors above 1024
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def server_is_stopping() -> bool:
    """Whether this process is on its way out.

    functions-framework serves with gunicorn's gthread worker. On SIGTERM (Cloud Run scaling in or
    deploying) the worker only flips its ``alive`` flag and then waits up to graceful_timeout for
    open requests, and a stream never ends by itself. Its SIGTERM handler is the worker's bound
    method, which is how we see the flag without a gunicorn config file (functions-framework
    takes none). Also true once the interpreter is shutting down.
    """
    if not threading.main_thread().is_alive():
        return True
    handler = signal.getsignal(signal.SIGTERM)
    worker = getattr(handler, "__self__", None)
    return type(worker).__module__.startswith("gunicorn.workers") and getattr(worker, "alive", True) is False


def encode_frame(event: str, data: str | dict[str, Any], event_id: str | None = None) -> bytes:
    """One SSE frame. JSON without indentation has no raw newlines, so one data line suffices."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


# ---- the endpoint ------------------------------------------------------------------------------
@stream_blueprint.record_once
def _install(state: BlueprintSetupState) -> None:
    runtime = state.options.get("runtime")
    if not isinstance(runtime, Runtime):
        raise RuntimeError("register the stream blueprint with runtime=rt")
    state.app.extensions[STREAM_EXTENSION] = Broadcaster(
        runtime.settings, firestore_source(runtime), clock=utcnow
    )


def stream_broadcaster(app: flask.Flask) -> Broadcaster:
    broadcaster: Broadcaster = app.extensions[STREAM_EXTENSION]
    return broadcaster


@stream_blueprint.before_app_request
def _hide_ticket() -> None:
    """Move ``ticket`` out of the query string before anything records the URL.

    Registered with the blueprint, so it runs before the tracing hook the app factory installs
    afterwards (which copies the URL into span attributes); a unit test checks that the token
    reaches no span. Only the stream's path is touched. (A used ticket opens nothing; this keeps
    an unused one, from a request that failed before redeeming it, out of our logs.)
    """
    environ = flask.request.environ
    if environ.get("PATH_INFO") != STREAM_PATH or TICKET_PARAM not in environ.get("QUERY_STRING", ""):
        return
    pairs = parse_qsl(environ["QUERY_STRING"], keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k != TICKET_PARAM]
    environ[_TICKET_ENVIRON_KEY] = next((v for k, v in pairs if k == TICKET_PARAM), "")
    query = urlencode(kept)
    environ["QUERY_STRING"] = query
    uri = STREAM_PATH + (f"?{query}" if query else "")
    for key in ("RAW_URI", "REQUEST_URI"):
        if key in environ:
            environ[key] = uri
    # The Request object may have parsed the old query already.
    flask.request.__dict__.pop("args", None)
    flask.request.__dict__.pop("url", None)
    flask.request.__dict__.pop("full_path", None)


def _stream_principal(settings: Settings) -> Principal:
    headers = flask.request.headers
    ticket = flask.request.environ.get(_TICKET_ENVIRON_KEY)
    if ticket is not None and not headers.get("Authorization") and not headers.get("X-API-Key"):
        return redeem_ticket(current_runtime(), ticket)
    return authenticate(settings, headers)


@stream_blueprint.get(STREAM_PATH)
def stream() -> flask.Response:
    settings: Settings = flask.current_app.extensions[SETTINGS_EXTENSION]
    principal = _stream_principal(settings)
    filters = StreamFilters.parse(flask.request.args)
    last_event_id = flask.request.headers.get("Last-Event-ID") or flask.request.args.get("lastEventId")
    environ = flask.request.environ
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    broadcaster = stream_broadcaster(flask.current_app)
    subscription = broadcaster.subscribe(
        principal, filters, last_event_id, sock if isinstance(sock, socket.socket) else None
    )
    # ClosingIterator: a body the server never starts iterating still unsubscribes on close().
    body = ClosingIterator(
        broadcaster.frames(subscription), [lambda: broadcaster.unsubscribe(subscription.subscriber)]
    )
    response = flask.Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-transform"
    # nginx and some proxies buffer responses unless told not to.
    response.headers["X-Accel-Buffering"] = "no"
    return response
