"""The instance's change feed: one thread tails the jobs collection on ``updatedAt`` while at least
one stream is open, and hands each batch of changed jobs to the broadcaster (services/api/stream.py).

Why a tail query (see docs/decisions/0009-change-feed.md for the measurements): its cost is one
small query per tick plus one document read per change, whatever the number of jobs or clients,
and it needs nothing running between requests (Cloud Run may throttle the CPU of an instance with
no request in flight; the feed runs only while streams, i.e. requests, are open).

- **Tail.** Every ``sse_poll_seconds`` (``sse_batch_seconds`` after a read that found changes, so
  a busy feed writes one batch per client per tick, not one frame per change):
  ``updatedAt > cursor order by updatedAt, __name__``. The cursor (updatedAt, jobId) only moves
  forward. Several pages in a row when a burst fills one.
- **Sweep for late commits.** ``updatedAt`` is the writer's clock when it planned the change, not
  the commit time: a transaction that commits late (slow RPC, retry) can land behind a cursor the
  tail already passed. Every ``sse_sweep_seconds`` the feed reads the slice of time that is now
  ``sse_commit_lag_seconds`` old, once; what it finds that was not sent yet is sent then. So a
  change is read at most twice by an instance, never lost to the tail's ordering.
- **Dedup.** What was sent is remembered per job by Firestore's own commit time of the version
  (``update_time``), with the facts filters look at, so a client filtered on ``running`` hears that
  its job left the filter.
"""

from __future__ import annotations

import logging
import threading
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
        self._sent: OrderedDict[str, _Sent] = OrderedDict()
        now = clock()
        self.cursor = FeedCursor(now)
        # The sweep starts a lag behind: a commit planned just before the feed started is still seen.
        self.swept_to = now - self.lag
        self._next_sweep = now
        self.polls_total = 0
        self.reads_total = 0
        self.errors_total = 0

    @property
    def head(self) -> FeedCursor:
        return self.cursor

    def poll(self) -> int:
        """One tick: the tail (every page it has), then the sweep if due. Returns changes sent."""
        self.polls_total += 1
        found: list[ChangedJob] = []
        while True:
            page = self.source(self.cursor, limit=PAGE_SIZE)
            found += page
            if page:
                self.cursor = max(self.cursor, FeedCursor.of(page[-1].job))
            if len(page) < PAGE_SIZE:
                break
        now = self.clock()
        if now >= self._next_sweep:
            found += self._sweep(now)
        self.reads_total += len(found)
        changes = self._unsent(found)
        if changes:
            self.deliver(changes)
        return len(changes)

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
            self._sent.move_to_end(job.job_id)
            out.append(Change(job, sent.facts if sent else None))
        while len(self._sent) > REMEMBERED_JOBS:
            self._sent.popitem(last=False)
        return out

    def run(self, wanted: Callable[[], bool], stopped: threading.Event) -> None:
        """Tick until nobody wants the feed (no stream open) or ``stopped`` is set."""
        while wanted() and not stopped.is_set():
            try:
                found = self.poll()
            except Exception:
                # Firestore unreachable or a bad page: streams stay open, the next tick retries.
                self.errors_total += 1
                log.warning("change feed read failed; retrying", exc_info=True)
                stopped.wait(RETRY_AFTER_ERROR_SECONDS)
                continue
            stopped.wait(self.settings.sse_batch_seconds if found else self.settings.sse_poll_seconds)
