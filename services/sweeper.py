"""The stale-job sweeper: times out active jobs that stopped moving (Cloud Scheduler, every minute).

Every active job carries ``staleAt``: its last heartbeat plus its stage's limit, capped by the
attempt's deadline (Music Clips: 10 minutes whatever the heartbeats), and no finished job has one.
So one single-field range query, ``staleAt <= now``, reads the stale candidates and nothing else,
however many jobs there are.

Each candidate moves to its pipeline's timed-out stage in a transaction that re-checks what the
query saw: the same stage (``expected_stage``) and still stale (a heartbeat that landed since wins).
Two sweeps running at once therefore time each job out once: the second finds it finished.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime

import flask
from google.api_core.exceptions import GoogleAPICallError, RetryError

from services.errors import JobNotFound, TransitionConflict
from services.http import entry_point, json_response
from services.jobs.models import Job, JobError
from services.jobs.state_machine import Transition
from services.pipelines.registry import get_pipeline
from services.runtime import Runtime
from services.telemetry import get_metrics
from services.telemetry.logging import bind_job, get_logger

log = get_logger(__name__)

# Timed-out pages leave the stale set, so pages only repeat jobs the sweep could not move.
MAX_PAGES_PER_RUN = 50


@dataclass(frozen=True)
class SweepReport:
    found: int = 0  # stale candidates read
    timed_out: int = 0  # moved to timed out by this sweep
    by_pipeline: dict[str, int] = field(default_factory=dict)  # timed out, by pipeline


def why_stale(job: Job, now: datetime) -> tuple[str, str]:
    """(error code, explanation) for a job the sweeper times out."""
    spec = get_pipeline(job.pipeline)
    quiet = int((now - job.heartbeat_at).total_seconds())
    if job.deadline_at is not None and job.deadline_at <= now:
        limit = spec.max_duration_seconds or int((job.deadline_at - job.created_at).total_seconds())
        return "DEADLINE_EXCEEDED", (
            f"timed out: the job did not finish within its {limit}s limit "
            f"(stuck in {job.stage}, last heartbeat {quiet}s ago)"
        )
    limit = spec.stage(job.stage).timeout_seconds
    return "STALE_HEARTBEAT", f"timed out: no heartbeat for {quiet}s in {job.stage} (limit {limit}s)"


def time_out_job(rt: Runtime, job: Job, now: datetime) -> bool:
    """Move one stale job to timed out; False if it moved, finished or revived meanwhile."""
    spec = get_pipeline(job.pipeline)
    code, reason = why_stale(job, now)
    transition = Transition(
        spec.timed_out.name,
        actor="sweeper",
        message=reason,
        expected_stage=job.stage,
        # The user reads the pipeline's own text when it has one; the log line and the event keep why.
        error=JobError(code=code, message=spec.timeout_error_text or reason, retryable=True),
    )
    try:
        result = rt.repo.transition(
            job.job_id,
            transition,
            only_if=lambda current: current.stale_at is not None and current.stale_at <= now,
        )
    except (TransitionConflict, JobNotFound):
        return False
    if result.applied:
        log.warning("job timed out: %s", reason)
    return result.applied


def sweep_stale_jobs(rt: Runtime, now: datetime | None = None) -> SweepReport:
    now = now or rt.repo.clock()
    batch = rt.settings.sweep_batch_size
    seen: set[str] = set()
    timed_out: Counter[str] = Counter()
    for _ in range(MAX_PAGES_PER_RUN):
        page = rt.repo.find_stale(now, batch)
        fresh = [job for job in page if job.job_id not in seen]
        for job in fresh:
            seen.add(job.job_id)
            with bind_job(job):
                try:
                    if time_out_job(rt, job, now):
                        timed_out[job.pipeline] += 1
                except (GoogleAPICallError, RetryError) as exc:
                    # One job's failed commit must not stop the sweep; the next run retries it.
                    log.warning("could not time out job %s (%s)", job.job_id, type(exc).__name__)
        if len(page) < batch or not fresh:
            break
    metrics = get_metrics()
    for pipeline, n in timed_out.items():
        metrics.stale_found(pipeline, n)
    report = SweepReport(found=len(seen), timed_out=sum(timed_out.values()), by_pipeline=dict(timed_out))
    log.info(
        "sweep: %d stale found, %d timed out %s",
        report.found,
        report.timed_out,
        report.by_pipeline,
        extra={"fields": {"staleFound": report.found, "timedOut": report.timed_out}},
    )
    return report


@entry_point("sweep_stale_jobs")
def handle_sweep(rt: Runtime, request: flask.Request) -> flask.Response:
    """Cloud Scheduler's call: one sweep, answered with its report."""
    return json_response(asdict(sweep_stale_jobs(rt)))
