"""The instance's change feed: one thread tails the jobs collection on ``updatedAt`` while at least
one stream is open, and hands each batch of changed jobs to the broadcaster (services/api/stream.py).

Why a tail query (see docs/decisions/0009-change-feed.md for the measurements): its cost is one
small query per tick plus two or three document reads per change, whatever the number of jobs or
clients, and it needs nothing running between requests (Cloud Run may throttle the CPU of an
instance with no request in flight; the feed runs only while streams, i.e. requests, are open).

- **Tail.** Every ``sse_poll_seconds`` (``sse_batch_seconds`` after a read that found changes, so
  a busy feed writes one batch per client per tick, not one frame per change; the slower
  ``sse_idle_poll_seconds`` once nothing changed for a while):
  ``updatedAt > after order by updatedAt, __name__``. The cursor (updatedAt, jobId) only moves
  forward. Several pages in a row when a burst fills one.
- **Hold-back for commits in flight.** ``updatedAt`` is the writer's clock when it planned the
  change, not the commit time: a transaction that commits late (slow RPC, retry) can land behind
  a cursor the tail already passed. So ``after`` is the cursor or, if earlier, the clock minus a
  hold-back: the longest flight (commit time minus planned time) seen lately, within bounds.
- **Sweep for later commits.** Every ``sse_sweep_seconds`` the feed reads the slice of time that is
  now ``sse_commit_lag_seconds`` old, once; what it finds that was not sent yet is sent then
  (counted as late). So no change is lost to the tail's ordering, whatever its flight.
- **Dedup.** What was sent is remembered per job by Firestore's own commit time of the version
  (``update_time``), with the facts filters look at, so a client filtered on ``running`` hears that
  its job left the filter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.jobs.models import Job
from services.jobs.repository import ChangedJob
from services.runtime import Runtime
from services.settings import Settings

log = logging.getLogger("jobtrail.stream.feed")

# Jobs read per query; a fuller page is followed by the next one at once.
PAGE_SIZE = 500
# Jobs whose last sent version is remembered (enough for the sweep's window at thousands of
# changes a second); a job forgotten and then swept is sent once more, which the page ignores.
REMEMBERED_JOBS = 20_000
RETRY_AFTER_ERROR_SECONDS = 1.0
# How fast the tail's hold-back forgets a long flight once commits are quick again.
FLIGHT_HALF_LIFE_SECONDS = 10.0


@dataclass(frozen=True, order=True)
class FeedCursor:
    """A position in the feed: (updatedAt, jobId). It is the SSE event id, so a browser that
    reconnects to any instance resumes from Firestore itself."""

    updated_at: datetime
    job_id: str = ""

    def encode(self) -> str:
        micros = round(self.updated_at.timestamp() * 1_000_000)
        return f"{micros}-{self.job_id}"

    @classmethod
    def parse(cls, text: str | None) -> FeedCursor | None:
        micros, _, job_id = (text or "").strip().partition("-")
        if not micros.isdigit() or len(micros) > 18:
            return None
        return cls(datetime.fromtimestamp(int(micros) / 1_000_000, UTC), job_id)

    @classmethod
    def of(cls, job: Job) -> FeedCursor:
        return cls(job.updated_at, job.job_id)


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


@dataclass(frozen=True)
class Change:
    job: Job
    previous: JobFacts | None  # the job as this instance last sent it, if it did


class ChangeSource(Protocol):
    """Reads jobs changed after a cursor (``JobRepository.jobs_changed_after``'s contract)."""

    def __call__(
        self, after: FeedCursor, *, until: datetime | None = None, limit: int
    ) -> list[ChangedJob]: ...


def firestore_changes(rt: Runtime) -> ChangeSource:
    def read(after: FeedCursor, *, until: datetime | None = None, limit: int) -> list[ChangedJob]:
        return rt.repo.jobs_changed_after(after.updated_at, after.job_id, until=until, limit=limit)

    return read


@dataclass
class _Sent:
    update_time: datetime
    facts: JobFacts


class ChangeFeed:
    """Tail + sweep over ``updatedAt``; ``poll`` does one tick, ``run`` ticks while ``wanted()``."""

    def __init__(
        self,
        settings: Settings,
        source: ChangeSource,
        deliver: Callable[[list[Change]], None],
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.source = source
        self.deliver = deliver
        self.clock = clock
        self.lag = timedelta(seconds=settings.sse_commit_lag_seconds)
        self.holdback_floor = timedelta(seconds=settings.sse_holdback_floor_seconds)
        self.holdback_ceiling = timedelta(seconds=settings.sse_holdback_ceiling_seconds)  # >= floor
        self.holdback = self.holdback_floor
        self._sent: OrderedDict[str, _Sent] = OrderedDict()
        now = clock()
        self.origin = self.cursor = FeedCursor(now)
        # The sweep starts a lag behind: a commit planned just before the feed started is still seen.
        self.swept_to = now - self.lag
        self._next_sweep = now
        self._learned_at = now
        self._longest_flight = timedelta(0)  # of the changes sent this tick
        self.polls_total = 0
        self.reads_total = 0
        self.errors_total = 0
        # Changes the tail passed by (committed behind its cursor) and the sweep sent, a commit lag late.
        self.late_total = 0
        self.sent_total = 0

    @property
    def head(self) -> FeedCursor:
        return self.cursor

    def poll(self) -> int:
        """One tick, read and delivered on the caller's thread. Returns changes sent."""
        changes = self.read()
        if changes:
            self.deliver(changes)
        return len(changes)

    def read(self) -> list[Change]:
        """One tick's reading: the tail (every page it has), then the sweep if due."""
        self.polls_total += 1
        started = self.clock()
        # Read from a hold-back behind the clock, not from the cursor alone: a change still in
        # flight (planned, not yet visible) is younger than the longest flight seen lately. Never
        # from before the feed began: that is the sweep's, and each stream's replay's.
        after = max(self.origin, min(self.cursor, FeedCursor(started - self.holdback)))
        found: list[ChangedJob] = []
        while True:
            page = self.source(after, limit=PAGE_SIZE)
            found += page
            if page:
                after = FeedCursor.of(page[-1].job)
                self.cursor = max(self.cursor, after)
            if len(page) < PAGE_SIZE:
                break
        changes = self._unsent(found)
        now = self.clock()
        if now >= self._next_sweep:
            swept = self._sweep(now)
            self.reads_total += len(swept)
            late = self._unsent(swept)  # after the tail's: a version the tail just sent is not sent again
            self.late_total += len(late)
            changes = late + changes  # older first
        self._learn_flight(now)
        self.reads_total += len(found)
        self.sent_total += len(changes)
        return changes

    def _learn_flight(self, now: datetime) -> None:
        """Hold-back = the longest flight (commit time minus planned updatedAt) seen lately, halving
        every FLIGHT_HALF_LIFE; between a floor (a quiet cloud commit) and a ceiling (what a busy
        tail may re-read each tick). A flight past the ceiling is the sweep's to find."""
        elapsed = (now - self._learned_at).total_seconds()
        self._learned_at = now
        held = max(self.holdback * 0.5 ** (elapsed / FLIGHT_HALF_LIFE_SECONDS), self._longest_flight)
        self._longest_flight = timedelta(0)
        self.holdback = min(max(held, self.holdback_floor), self.holdback_ceiling)

    def _sweep(self, now: datetime) -> list[ChangedJob]:
        self._next_sweep = now + timedelta(seconds=self.settings.sse_sweep_seconds)
        until = now - self.lag
        if until <= self.swept_to:
            return []
        swept: list[ChangedJob] = []
        after = FeedCursor(self.swept_to)
        while True:
            page = self.source(after, until=until, limit=PAGE_SIZE)
            swept += page
            if len(page) < PAGE_SIZE:
                break
            after = FeedCursor.of(page[-1].job)
        self.swept_to = until
        return swept

    def _unsent(self, found: list[ChangedJob]) -> list[Change]:
        out: list[Change] = []
        for changed in sorted(found, key=lambda c: FeedCursor.of(c.job)):
            job = changed.job
            sent = self._sent.get(job.job_id)
            if sent is not None and changed.update_time <= sent.update_time:
                continue
            self._sent[job.job_id] = _Sent(changed.update_time, JobFacts.of(job))
            self._longest_flight = max(self._longest_flight, changed.update_time - job.updated_at)
            self._sent.move_to_end(job.job_id)
            out.append(Change(job, sent.facts if sent else None))
        while len(self._sent) > REMEMBERED_JOBS:
            self._sent.popitem(last=False)
        return out

    def run(self, wanted: Callable[[], bool], stopped: threading.Event) -> None:
        """Tick until nobody wants the feed (no stream open) or ``stopped`` is set.

        Reading and fan-out overlap: a fan-out thread delivers a tick's changes while this one
        reads the next, so a change waits for one query and one fan-out, not for the previous
        tick's fan-out too. After a read that found changes the next waits ``sse_batch_seconds``
        (one write per client per batch; waiting only what was left of it measured more CPU and
        no lower latency), after an empty one ``sse_poll_seconds``, and ``sse_idle_poll_seconds``
        once nothing came for ``sse_idle_after_seconds``.
        """
        outbox = _Outbox(self.deliver)
        fan_out = threading.Thread(target=outbox.run, name="stream-fan-out", daemon=True)
        fan_out.start()
        last_change = time.monotonic()
        try:
            while wanted() and not stopped.is_set():
                started = time.monotonic()
                try:
                    changes = self.read()
                except Exception:
                    # Firestore unreachable or a bad page: streams stay open, the next tick retries.
                    self.errors_total += 1
                    log.warning("change feed read failed; retrying", exc_info=True)
                    stopped.wait(RETRY_AFTER_ERROR_SECONDS)
                    continue
                if changes:
                    last_change = started
                    outbox.put(changes)
                    stopped.wait(self.settings.sse_batch_seconds)
                elif started - last_change < self.settings.sse_idle_after_seconds:
                    stopped.wait(self.settings.sse_poll_seconds)
                else:  # nothing for a while: each empty read is still a billed read
                    stopped.wait(self.settings.sse_idle_poll_seconds)
        finally:
            outbox.close()
            fan_out.join()
        log.info(
            "change feed stopped after %d ticks: %d jobs read, %d sent, %d of them late (by the sweep); "
            "hold-back %.0f ms",
            self.polls_total, self.reads_total, self.sent_total, self.late_total,
            self.holdback.total_seconds() * 1000,
        )  # fmt: skip


class _Outbox:
    """Ticks waiting for the fan-out thread. Several waiting are delivered as one (one write per
    client), in the order they were read."""

    def __init__(self, deliver: Callable[[list[Change]], None]) -> None:
        self.deliver = deliver
        self._ready = threading.Condition()
        self._waiting: list[Change] = []
        self._closed = False

    def put(self, changes: list[Change]) -> None:
        with self._ready:
            self._waiting += changes
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def run(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return  # closed, and everything read was delivered
                changes, self._waiting = self._waiting, []
            try:
                self.deliver(changes)
            except Exception:
                log.exception("change feed fan-out failed; %d changes not delivered", len(changes))
