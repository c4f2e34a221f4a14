"""The polling fallback: scheduled work (Cloud Scheduler, every minute) that asks Suno's record-info
about the tasks whose callback has not come.

Each run reads only the jobs due for a poll (``nextPollAt <= now``, a single-field index), claims
each by moving its next poll further out (exponential backoff; the claim's precondition makes two
overlapping runs poll a job once), asks Suno, and applies the answer with the callback's own
``apply_suno_result``: whichever of callback and poll comes first wins. A job that finished by
other means (callback, sweeper, cancel) only has its schedule cleared. Suno errors are counted
and left to the backoff; a job Suno never answers for is the sweeper's to time out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import flask

from services.external.resilience import ExternalError
from services.http import entry_point, json_response
from services.jobs.repository import DueSunoPoll
from services.music_clips.config import poll_delay_seconds
from services.music_clips.service import apply_suno_result
from services.pipelines.music_clips import MUSIC_CLIPS
from services.runtime import Runtime
from services.telemetry.logging import bind_job, get_logger

log = get_logger(__name__)

# Each page's jobs leave the due set (claimed or cleared), so pages only repeat on failures.
MAX_PAGES_PER_RUN = 20


@dataclass(frozen=True)
class PollReport:
    due: int = 0
    polled: int = 0
    # By SunoOutcome value: succeeded, failed, pending, already_finished.
    outcomes: dict[str, int] = field(default_factory=dict)
    cleared: int = 0  # finished jobs whose leftover schedule was removed
    skipped: int = 0  # claimed by a concurrent run
    errors: int = 0  # Suno did not answer; retried at the next backoff step


def poll_music_jobs(rt: Runtime, now: datetime | None = None) -> PollReport:
    now = now or rt.repo.clock()
    batch = rt.settings.sweep_batch_size
    seen: set[str] = set()
    outcomes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for _ in range(MAX_PAGES_PER_RUN):
        page = rt.repo.find_due_suno_polls(now, batch)
        fresh = [due for due in page if due.job.job_id not in seen]
        for due in fresh:
            seen.add(due.job.job_id)
            with bind_job(due.job):
                counts[_poll_one(rt, due, now, outcomes)] += 1
        if len(page) < batch or not fresh:
            break
    report = PollReport(
        due=len(seen),
        polled=counts["polled"],
        outcomes=dict(outcomes),
        cleared=counts["cleared"],
        skipped=counts["skipped"],
        errors=counts["error"],
    )
    if report.due:
        log.info("Suno poll: %d due, %d polled, outcomes %s", report.due, report.polled, report.outcomes)
    return report


def _poll_one(rt: Runtime, due: DueSunoPoll, now: datetime, outcomes: Counter[str]) -> str:
    job = due.job
    if job.status.is_terminal or job.pipeline != MUSIC_CLIPS.name or not job.suno_task_id:
        # Nothing to poll as read; but a retry's worker may have stored a new task and armed a new
        # schedule since, which must stay.
        return "cleared" if rt.repo.clear_suno_poll(job.job_id, unchanged_since=due.read_at) else "skipped"
    next_at = now + timedelta(seconds=poll_delay_seconds(rt.settings, due.polls + 1))
    if not rt.repo.claim_suno_poll(due, next_at):
        return "skipped"
    try:
        record = rt.suno.record_info(job.suno_task_id)
    except ExternalError as exc:
        log.warning(
            "Suno record-info failed for job %s (%s); next poll at %s",
            job.job_id,
            exc.code,
            next_at.isoformat(),
        )
        return "error"
    outcomes[apply_suno_result(rt, job, record, actor="suno-poller").value] += 1
    return "polled"


@entry_point("poll_music_jobs")
def handle_poll(rt: Runtime, request: flask.Request) -> flask.Response:
    """Cloud Scheduler's call: one round of polls, answered with its report."""
    return json_response(asdict(poll_music_jobs(rt)))
