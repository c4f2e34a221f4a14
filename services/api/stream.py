"""GET /api/stream: job changes as server-sent events, fed by the instance's change feed.

    change feed (services/api/change_feed.py: a tail query on updatedAt, one thread, only while a
    stream is open) -> Broadcaster -> each client's socket (one non-blocking send per tick)

- Who sees what: admins every job, users their own (job.userId == token sub); the query string
  narrows further (``status`` (comma-separated), ``pipeline``, ``accountId``). A change is sent when
  the job matches the filters before or after it, so a page can drop a row that left its filter.
- Each feed tick becomes ONE write per client (the frames it may see, joined), built once per
  audience (admin or user, and filters): the cost per tick is per client, not per change and client.
  Under gunicorn (what Cloud Run runs) the feed's thread writes it to the client's socket itself,
  framed as gunicorn frames the body, with a non-blocking send; the stream's own thread sleeps and
  only wakes to finish a write the socket did not take at once, for heartbeats, and to end. Waking
  a thousand threads per tick instead cost more than everything else together (ADR 0009).
- Event ids are feed cursors, ``<updatedAt in µs>-<jobId>``. A reconnecting browser sends
  Last-Event-ID (or ``?lastEventId=`` when the page reopens the stream itself); the jobs changed
  since are read from Firestore, so the reconnect may land on any instance. An id that is not a
  cursor, older than ``sse_replay_seconds``, or followed by more than ``sse_replay_events`` changes
  gets a ``reset`` event instead: the page refetches.
- A comment every ``sse_heartbeat_seconds`` keeps proxies from closing an idle stream (and finds
  clients that went away). A client that falls ``sse_client_queue_size`` batches behind is dropped
  (its socket shut) without slowing anyone else; it reconnects and replays.
- Shutdown (``Broadcaster.close``, or the server stopping) ends every stream cleanly, so the
  server's graceful stop is not held up by streams that would never end by themselves.

Auth: the usual headers, or, for EventSource (which cannot send headers), ``?ticket=``: a one-time
ticket from POST /api/stream/tickets (services/api/stream_tickets.py), so no bearer token is ever
put in a URL. The ticket is removed from the request before tracing or logging sees the URL
(``_hide_ticket``) all the same; see docs/decisions/0006-live-dashboard.md and 0009-change-feed.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import select
import signal
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import flask
from flask.blueprints import BlueprintSetupState
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from werkzeug.wsgi import ClosingIterator

from services.api.change_feed import Change, ChangeFeed, ChangeSource, FeedCursor, JobFacts, firestore_changes
from services.api.routing import current_runtime
from services.api.schemas import JobView
from services.api.stream_tickets import TICKET_PARAM, redeem_ticket
from services.auth import SETTINGS_EXTENSION, Principal, authenticate
from services.errors import InvalidInput, JobtrailError
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
_ID_PART = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"

stream_blueprint = flask.Blueprint("stream", __name__)


class StreamUnavailable(JobtrailError):
    code = "STREAM_UNAVAILABLE"
    http_status = 503


# ---- what a client asked for -------------------------------------------------------------------
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
class Outgoing:
    """Bytes for the clients of one audience, framed at most once per tick for all of them."""

    body: bytes

    @functools.cached_property
    def chunk(self) -> bytes:
        # What gunicorn's own write does to a chunked body's piece (gunicorn.util.write).
        return b"%X\r\n%s\r\n" % (len(self.body), self.body)


KEEPALIVE = Outgoing(b": keepalive\n\n")
# Who gets the very same bytes: admins (None) or one user, and the filters.
Audience = tuple[str | None, StreamFilters]


@dataclass(frozen=True)
class StreamEvent:
    job_id: str
    facts: JobFacts
    previous: JobFacts | None  # the job as this instance last sent it, if it did
    frame: bytes  # encoded once, shared by every client


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    filters: StreamFilters
    limit: int  # batches it may lag behind before it is dropped
    # The connection's socket, when the server exposes it: shutting it down is how a client that
    # stopped reading is dropped, and a readable one tells that the client hung up.
    sock: socket.socket | None = None
    # Set when the feed may write to that socket itself (gunicorn, whose framing is known): True
    # for a chunked body (HTTP/1.1), False for a bare one (HTTP/1.0). None: the stream's own
    # thread writes every batch through the server.
    chunked: bool | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: deque[bytes] = field(default_factory=deque)  # batches not written yet
    wake: threading.Event = field(default_factory=threading.Event)  # pending has something
    ended: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False
    direct: bool = False  # the feed writes straight to the socket
    flushing: bool = False  # the stream's own thread is writing pending bytes to the socket
    audience: Audience = field(init=False)

    def __post_init__(self) -> None:
        self.audience = (None if self.principal.is_admin else self.principal.subject, self.filters)

    def may_see(self, facts: JobFacts) -> bool:
        return self.principal.is_admin or facts.user_id == self.principal.subject

    def wants(self, event: StreamEvent) -> bool:
        if not self.may_see(event.facts):
            return False
        return self.filters.matches(event.facts) or (
            event.previous is not None and self.filters.matches(event.previous)
        )

    def offer(self, outgoing: Outgoing) -> bool:
        """Write or queue one batch. False: the client is too far behind (drop it).

        Written by the caller's thread when it can be done without blocking: one non-blocking
        send per client per tick, instead of waking a thousand threads to do it. What the socket
        does not take at once is left for the stream's own thread, which may block on it.
        """
        with self.lock:
            if self.ended.is_set():
                return True
            if self.direct:
                assert self.sock is not None
                batch = outgoing.chunk if self.chunked else outgoing.body
                if not self.pending and not self.flushing:
                    try:
                        sent = self.sock.send(batch, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        sent = 0
                    except OSError:  # the client is gone: its thread ends the stream
                        self.ended.set()
                        self.wake.set()
                        return True
                    if sent == len(batch):
                        return True
                    batch = batch[sent:]
            elif len(self.pending) >= self.limit:
                return False
            else:
                batch = outgoing.body
            self.pending.append(batch)
            self.wake.set()
            return len(self.pending) <= self.limit

    def take_pending(self) -> list[bytes]:
        with self.lock:
            chunks = list(self.pending)
            self.pending.clear()
            self.wake.clear()
            self.flushing = bool(chunks) and self.direct
            return chunks

    def go_direct(self) -> None:
        """From now on the feed writes to the socket (the server has sent the headers and every
        byte the stream yielded so far)."""
        with self.lock:
            if self.chunked:
                self.pending = deque(Outgoing(batch).chunk for batch in self.pending)
            self.direct = True

    def stop_direct(self) -> None:
        """Before the server writes again (the final chunk): nobody else may touch the socket."""
        with self.lock:
            self.direct = False
            self.ended.set()

    def end(self) -> None:
        """Stop this client's stream at its next step (nothing more is sent to it)."""
        self.ended.set()
        self.wake.set()

    def shut_socket(self) -> None:
        if self.sock is not None:
            # OSError: already closed by the client or the server.
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class Subscription:
    subscriber: Subscriber
    hello: dict[str, Any]
    hello_id: str
    replay: list[bytes]
    reset: bytes | None


# ---- the broadcaster -----------------------------------------------------------------------------
class Broadcaster:
    """Fans the instance's change feed out to every connected client; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        source: ChangeSource,
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
        # The connected clients, by audience: a tick's bytes are built once per audience and then
        # written in one tight loop (the fan-out's cost is per client: keep it to the send).
        self._audiences: dict[Audience, set[Subscriber]] = {}
        self._closed = threading.Event()
        # The feed runs (on its own thread) only while a stream is open; a new one per run.
        self._feed: ChangeFeed | None = None
        self._feed_running = False
        self.max_streams = stream_capacity(settings)
        self.published_total = 0
        self.dropped_total = 0
        self.feed_runs_total = 0

    # ---- clients -------------------------------------------------------------------------------
    def subscribe(
        self,
        principal: Principal,
        filters: StreamFilters,
        last_event_id: str | None = None,
        sock: socket.socket | None = None,
        chunked: bool | None = None,
    ) -> Subscription:
        subscriber = Subscriber(principal, filters, self.settings.sse_client_queue_size, sock, chunked)
        with self._lock:
            if self._closed.is_set():
                raise StreamUnavailable("the stream is shutting down; reconnect")
            if self._client_count() >= self.max_streams:
                raise StreamUnavailable("this instance holds as many streams as it may; retry shortly")
            # Subscribed before the replay is read: a change committed meanwhile is in both
            # (the page keeps the newer version), never in neither.
            self._audiences.setdefault(subscriber.audience, set()).add(subscriber)
            head = self._ensure_feed()
        try:
            replay, reset = self._replay_for(subscriber, last_event_id, head)
        except BaseException:
            self.unsubscribe(subscriber)
            raise
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
        return Subscription(subscriber, hello, head.encode(), replay, reset)

    def _replay_for(
        self, subscriber: Subscriber, last_event_id: str | None, head: FeedCursor
    ) -> tuple[list[bytes], bytes | None]:
        """What a reconnecting client missed, read from Firestore (so it works on any instance), or
        a reset (the page refetches) when that is unknowable or too much."""
        if not last_event_id:
            return [], None
        cursor = FeedCursor.parse(last_event_id)
        now = self.clock()
        if cursor is None:
            reason = "not an event id of this feed"
        elif cursor.updated_at > now + timedelta(seconds=self.settings.sse_commit_lag_seconds):
            reason = "an event id from the future"
        elif cursor.updated_at < now - timedelta(seconds=self.settings.sse_replay_seconds):
            reason = "older than the replay window"
        else:
            # From a commit lag earlier: a change that committed late behind the client's last event.
            since = FeedCursor(cursor.updated_at - timedelta(seconds=self.settings.sse_commit_lag_seconds))
            limit = self.settings.sse_replay_events
            try:
                changed = self.source(since, limit=limit + 1)
            except Exception:
                log.warning("stream replay could not read Firestore", exc_info=True)
                raise StreamUnavailable("the stream cannot replay right now; reconnect") from None
            if len(changed) <= limit:
                # Every job the client may see, filters or not: the page drops rows that left them.
                return [
                    self._event(Change(c.job, None), now).frame
                    for c in changed
                    if subscriber.may_see(JobFacts.of(c.job))
                ], None
            reason = "more changes than a replay sends"
        return [], encode_frame("reset", {"reason": reason}, head.encode())

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._forget(subscriber)

    def _forget(self, subscriber: Subscriber) -> None:
        """Under the lock."""
        members = self._audiences.get(subscriber.audience)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._audiences[subscriber.audience]

    def _client_count(self) -> int:
        """Under the lock."""
        return sum(len(members) for members in self._audiences.values())

    def _event(self, change: Change, now: datetime) -> StreamEvent:
        job = change.job
        payload = json.dumps(
            JobView.of(job, self.settings, now).model_dump(mode="json", by_alias=True), separators=(",", ":")
        )
        frame = encode_frame("job", payload, FeedCursor.of(job).encode())
        return StreamEvent(job.job_id, JobFacts.of(job), change.previous, frame)

    def publish(self, changes: list[Change]) -> None:
        """Send one feed tick's changes: one write per client that may see any of them."""
        now = self.clock()
        events = [self._event(change, now) for change in changes]
        with self._lock:
            self.published_total += len(events)
            for members in list(self._audiences.values()):
                first = next(iter(members))
                body = b"".join(e.frame for e in events if first.wants(e))
                if not body:
                    continue
                outgoing = Outgoing(body)
                for subscriber in list(members):
                    if not subscriber.offer(outgoing):
                        self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        """Under the lock: a client too far behind. Its reconnect replays what it missed."""
        self._forget(subscriber)
        subscriber.dropped = True
        subscriber.end()
        subscriber.shut_socket()
        self.dropped_total += 1
        log.warning("dropped a stream client %s batches behind", len(subscriber.pending))

    def frames(self, subscription: Subscription) -> Iterator[bytes]:
        """One client's response body. Ends when the client is dropped, on shutdown, or (at the
        next heartbeat at the latest) when the client goes away."""
        subscriber = subscription.subscriber
        try:
            yield f"retry: {RETRY_MS}\n".encode() + encode_frame(
                "hello", subscription.hello, subscription.hello_id
            )
            if subscription.reset is not None:
                yield subscription.reset
            if subscription.replay:
                yield b"".join(subscription.replay)
            if subscriber.chunked is not None and subscriber.sock is not None:
                self._serve_direct(subscriber, subscriber.sock)
            else:
                yield from self._serve_through_server(subscriber)
        finally:
            self.unsubscribe(subscriber)

    def _serve_direct(self, subscriber: Subscriber, sock: socket.socket) -> None:
        """The feed writes; this thread sleeps, and wakes only for what the socket did not take
        at once (it may block on that), for heartbeats, and to end."""
        heartbeat = self.settings.sse_heartbeat_seconds
        subscriber.go_direct()
        try:
            while not subscriber.ended.is_set():
                chunks = subscriber.take_pending()
                if chunks:
                    try:
                        sock.sendall(b"".join(chunks))
                    except OSError:
                        return
                    finally:
                        with subscriber.lock:
                            subscriber.flushing = False
                    continue
                if subscriber.wake.wait(heartbeat):
                    continue
                if peer_closed(sock):
                    return
                if not subscriber.offer(KEEPALIVE):
                    return
        finally:
            subscriber.stop_direct()

    def _serve_through_server(self, subscriber: Subscriber) -> Iterator[bytes]:
        heartbeat = self.settings.sse_heartbeat_seconds
        while not subscriber.ended.is_set():
            if not subscriber.wake.wait(heartbeat):
                if subscriber.sock is not None and peer_closed(subscriber.sock):
                    return
                yield KEEPALIVE.body
                continue
            chunks = subscriber.take_pending()
            if subscriber.ended.is_set():
                return
            if chunks:
                yield b"".join(chunks)

    # ---- the feed --------------------------------------------------------------------------------
    def _ensure_feed(self) -> FeedCursor:
        """Under the lock: start the feed if no stream had it running; returns its head."""
        if not self._feed_running or self._feed is None:
            self._feed = ChangeFeed(self.settings, self.source, self.publish, clock=self.clock)
            self._feed_running = True
            self.feed_runs_total += 1
            feed = self._feed
            threading.Thread(
                target=feed.run, args=(self._feed_wanted, self._closed), name="stream-feed", daemon=True
            ).start()
        return self._feed.head

    def _feed_wanted(self) -> bool:
        """Asked by the feed before each tick: on while a stream is open and the server runs."""
        if self._stopping():
            with self._lock:
                streams = self._client_count()
            log.info("server is stopping: closing %d streams", streams)
            self.close()
        with self._lock:
            if self._audiences and not self._closed.is_set():  # an audience has a client at least
                return True
            # Decided under the lock: a subscriber arriving after this starts a new feed.
            self._feed_running = False
            return False

    @property
    def feed_running(self) -> bool:
        return self._feed_running

    # ---- shutdown --------------------------------------------------------------------------------
    def close(self) -> None:
        """End every stream and stop the feed. Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            subscribers = [s for members in self._audiences.values() for s in members]
            self._audiences.clear()
        for subscriber in subscribers:
            subscriber.end()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            feed = self._feed
            return {
                "instance": self.instance_id,
                "clients": self._client_count(),
                "audiences": len(self._audiences),
                "published": self.published_total,
                "dropped": self.dropped_total,
                "feedRunning": self._feed_running,
                "feedRuns": self.feed_runs_total,
                "feedPolls": feed.polls_total if feed else 0,
                "feedReads": feed.reads_total if feed else 0,
                "feedErrors": feed.errors_total if feed else 0,
                "feedLate": feed.late_total if feed else 0,
                "head": feed.head.encode() if feed else None,
            }


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
        runtime.settings, firestore_changes(runtime), clock=utcnow
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
    # Not over TLS: an SSL socket takes no send flags (Cloud Run terminates TLS in front anyway).
    gunicorn_socket = environ.get("gunicorn.socket")
    served_by_gunicorn = isinstance(gunicorn_socket, socket.socket) and not isinstance(
        gunicorn_socket, ssl.SSLSocket
    )
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    # gunicorn frames an HTTP/1.1 body in chunks and an HTTP/1.0 one not at all; the feed writes
    # to the socket itself only where it knows the framing (gunicorn: what Cloud Run runs).
    chunked = environ.get("SERVER_PROTOCOL") != "HTTP/1.0" if served_by_gunicorn else None
    broadcaster = stream_broadcaster(flask.current_app)
    subscription = broadcaster.subscribe(
        principal, filters, last_event_id, sock if isinstance(sock, socket.socket) else None, chunked
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
