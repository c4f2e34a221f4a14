"""The tracker: what a service's business code calls to report its jobs to jobtrail.

    tracker = Tracker(HttpTransport(url, ReporterKey(key)), pipeline="clip_render")
    job = tracker.start_job("render-42", account_id=..., scenario_id=..., source_id=..., user_id=...)
    with tracker.stage(job, "rendering", done="rendered"):
        render()
    tracker.succeeded(job, result={"url": url})

Every call only queues: one background thread delivers the queue in order, retrying with
exponential backoff while jobtrail cannot be reached. Nothing here ever raises into business code
because of jobtrail: the queue is bounded (a warning says what was dropped once it is full) and a
report jobtrail refuses (bad input, out of scope, a stale stage) is logged and dropped.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace

from jobtrail_client.transport import Item, Outcome, Sent, Transport

log = logging.getLogger("jobtrail_client")


@dataclass
class JobHandle:
    """A job as the service knows it: its pipeline and its own key. ``job_id`` is filled in once
    jobtrail has answered the create (never, over Pub/Sub); reports do not need it."""

    pipeline: str
    key: str
    job_id: str | None = None
    trace_id: str | None = None

    def ref(self) -> dict[str, dict[str, str]]:
        """How reports name the job: by key, which works before (or without) the create's answer."""
        return {"job": {"pipeline": self.pipeline, "idempotencyKey": self.key}}


@dataclass
class Stats:
    delivered: int = 0
    refused: int = 0
    dropped: int = 0
    retries: int = 0
    refusals: list[str] = field(default_factory=list)


class Tracker:
    def __init__(
        self,
        transport: Transport,
        *,
        pipeline: str,
        heartbeat_seconds: float = 20.0,
        buffer_size: int = 10_000,
        backoff_initial_seconds: float = 0.2,
        backoff_max_seconds: float = 5.0,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.transport = transport
        self.pipeline = pipeline
        self.heartbeat_seconds = heartbeat_seconds
        self.buffer_size = buffer_size
        self.backoff_initial_seconds = backoff_initial_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.stats = Stats()
        self._tracer = trace.get_tracer("jobtrail_client", tracer_provider=tracer_provider)
        self._queue: deque[tuple[Item, JobHandle | None]] = deque()
        self._queued_heartbeats: set[str] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._outage_since: float | None = None
        self._thread = threading.Thread(target=self._deliver_forever, name="jobtrail-client", daemon=True)
        self._thread.start()

    # ---- what business code calls ---------------------------------------------------------------
    def start_job(
        self,
        key: str,
        *,
        account_id: str,
        scenario_id: str,
        source_id: str,
        user_id: str,
        input: Mapping[str, Any] | None = None,
    ) -> JobHandle:
        """A job for ``key`` (the service's own id of this unit of work; creating twice is safe)."""
        job = JobHandle(self.pipeline, key)
        self._enqueue(
            "create",
            {
                "pipeline": self.pipeline,
                "idempotencyKey": key,
                "accountId": account_id,
                "scenarioId": scenario_id,
                "sourceId": source_id,
                "userId": user_id,
                "input": dict(input or {}),
            },
            job,
        )
        return job

    @contextmanager
    def stage(self, job: JobHandle, name: str, *, done: str | None = None) -> Iterator[None]:
        """Report ``name`` on entry, heartbeats while the block runs, and on exit ``done`` (if
        given) or the failure: an exception is reported as failed (its ``code`` attribute or class
        name) and raised on unchanged. The block runs in a span of its own, whose trace the
        reports carry."""
        span = self._tracer.start_span(f"stage {name}", attributes={"jobtrail.stage": name})
        # Without an OpenTelemetry SDK the span is invalid: keep the caller's context instead.
        scope = trace.use_span(span, end_on_exit=True) if span.get_span_context().is_valid else nullcontext()
        with scope:
            started = time.monotonic()
            self.reached(job, name)
            stop = threading.Event()
            # Heartbeats carry the stage's trace too: the thread runs in a copy of this context.
            beating = threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._beat, job, stop),
                name=f"jobtrail-heartbeat:{name}",
                daemon=True,
            )
            beating.start()
            try:
                yield
            except BaseException as exc:
                stop.set()
                self.failed(
                    job,
                    str(getattr(exc, "code", "") or type(exc).__name__),
                    str(exc) or type(exc).__name__,
                    retryable=bool(getattr(exc, "retryable", False)),
                )
                raise
            finally:
                stop.set()
            usage = {"compute_seconds": round(time.monotonic() - started, 3)}
            if done is not None:
                self.reached(job, done, usage=usage)

    def reached(
        self, job: JobHandle, stage: str, message: str = "", *, usage: Mapping[str, float] | None = None
    ) -> None:
        self._report(job, type="stage", stage=stage, message=message, usage=dict(usage or {}))

    def heartbeat(self, job: JobHandle) -> None:
        self._report(job, type="heartbeat")

    def progress(self, job: JobHandle, text: str) -> None:
        self._report(job, type="progress", message=text[:1000])

    def failed(self, job: JobHandle, code: str, message: str = "", *, retryable: bool = False) -> None:
        self._report(
            job, type="failed", errorCode=_error_code(code), message=message[:1000], retryable=retryable
        )

    def succeeded(
        self,
        job: JobHandle,
        result: Mapping[str, Any] | None = None,
        *,
        usage: Mapping[str, float] | None = None,
    ) -> None:
        self._report(job, type="succeeded", result=dict(result or {}), usage=dict(usage or {}))

    def retry(self, job: JobHandle) -> None:
        self._report(job, type="retry")

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)  # the one being sent stays queued until it is answered

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued was delivered or refused; False if ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for up to ``timeout``, then stop the delivery thread; False if reports were left."""
        flushed = self.flush(timeout)
        with self._cond:
            self._closed = True
            left = len(self._queue)
            self._cond.notify_all()
        if left:
            log.warning("jobtrail: closing with %d reports undelivered", left)
        self._thread.join(timeout=1.0)
        return flushed

    # ---- queueing --------------------------------------------------------------------------------
    def _report(self, job: JobHandle, **fields: Any) -> None:
        self._enqueue(
            "report", {**job.ref(), **{k: v for k, v in fields.items() if v not in ("", None, {})}}, job
        )

    def _enqueue(self, kind: str, body: dict[str, Any], job: JobHandle) -> None:
        try:
            trace_headers: dict[str, str] = {}
            propagate.inject(trace_headers)
            heartbeat_of = job.key if body.get("type") == "heartbeat" else None
            with self._cond:
                if self._closed:
                    log.warning("jobtrail: tracker closed, %s for %s not sent", kind, job.key)
                    return
                if heartbeat_of is not None and heartbeat_of in self._queued_heartbeats:
                    return  # one queued heartbeat says as much as many
                if len(self._queue) >= self.buffer_size:
                    self.stats.dropped += 1
                    log.warning(
                        "jobtrail: report buffer full (%d), %s for %s dropped",
                        self.buffer_size,
                        kind,
                        job.key,
                    )
                    return
                if heartbeat_of is not None:
                    self._queued_heartbeats.add(heartbeat_of)
                self._queue.append((Item(kind, body, trace_headers), job))
                self._cond.notify_all()
        except Exception:  # never into business code
            log.warning("jobtrail: could not queue a %s", kind, exc_info=True)

    def _beat(self, job: JobHandle, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_seconds):
            self.heartbeat(job)

    # ---- delivery --------------------------------------------------------------------------------
    def _deliver_forever(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                item, job = self._queue[0]
            sent = self._send(item)
            if sent.outcome is Outcome.RETRY:
                failures += 1
                self.stats.retries += 1
                self._note_outage(sent.detail)
                resume_at = time.monotonic() + self._backoff(failures)
                with self._cond:
                    # New reports notify too; only close() cuts the pause short.
                    while not self._closed and (left := resume_at - time.monotonic()) > 0:
                        self._cond.wait(left)
                continue
            failures = 0
            self._note_recovery()
            with self._cond:
                self._queue.popleft()
                if item.body.get("type") == "heartbeat" and job is not None:
                    self._queued_heartbeats.discard(job.key)
                self._cond.notify_all()
            if sent.outcome is Outcome.DELIVERED:
                self.stats.delivered += 1
                if item.kind == "create" and job is not None and sent.body:
                    job.job_id = sent.body.get("jobId", job.job_id)
                    job.trace_id = sent.body.get("traceId", job.trace_id)
            else:
                self.stats.refused += 1
                self.stats.refusals.append(sent.detail)
                log.warning(
                    "jobtrail refused a %s for %s: %s",
                    item.kind,
                    item.body.get("idempotencyKey"),
                    sent.detail,
                )

    def _send(self, item: Item) -> Sent:
        try:
            return self.transport.send(item)
        except Exception as exc:  # a transport bug must not kill delivery
            return Sent(Outcome.RETRY, type(exc).__name__)

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _note_outage(self, detail: str) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "jobtrail unreachable (%s); buffering %d reports and retrying", detail, self.pending()
            )

    def _note_recovery(self) -> None:
        if self._outage_since is not None:
            log.warning("jobtrail reachable again after %.1fs", time.monotonic() - self._outage_since)
            self._outage_since = None


def _error_code(code: str) -> str:
    """An error code jobtrail accepts (a letter, then letters, digits, _ . -; at most 64)."""
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in code)[:64]
    return cleaned if cleaned[:1].isalpha() else f"E_{cleaned}"[:64]
