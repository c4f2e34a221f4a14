"""Control actions (retry, cancel, DLQ replay, queue pause/resume): the API, the CLI and tests all
call these. Each one writes an audit record (who, what, target, parameters, result), also when it
is refused; authorization (owner or admin) is the caller's job, see services/auth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.api_core.exceptions import GoogleAPICallError
from google.api_core.exceptions import NotFound as GoogleNotFound
from pydantic import Field

from infra.topology import load_topology
from services.errors import IllegalTransition, JobtrailError, NotFound, TransitionConflict
from services.jobs.models import CamelModel, Job, QueueState
from services.jobs.repository import QuerySpec
from services.jobs.state_machine import Transition
from services.pipelines.handlers import get_steps
from services.pipelines.registry import get_pipeline
from services.pipelines.spec import JobStatus
from services.publishing import publish_job
from services.runtime import Runtime
from services.telemetry.redaction import Redactor, secret_values

log = logging.getLogger(__name__)

DEAD_LETTERED = "DEAD_LETTERED"
# Failures kept in a bulk replay report; the counts are always complete.
MAX_REPORTED_FAILURES = 50


class QueueNotFound(NotFound):
    code = "QUEUE_NOT_FOUND"


class NotDeadLettered(TransitionConflict):
    code = "NOT_DEAD_LETTERED"


class PubSubUnavailable(JobtrailError):
    code = "PUBSUB_UNAVAILABLE"
    http_status = 503


# ---- audit ---------------------------------------------------------------------------------------
@contextmanager
def audited(
    rt: Runtime, *, actor: str, action: str, target: str, params: dict[str, Any]
) -> Iterator[list[str]]:
    """Record ``action`` once it ends: "ok" plus whatever the block appended, or "error: CODE"."""
    outcome: list[str] = []
    try:
        yield outcome
    except Exception as exc:
        code = exc.code if isinstance(exc, JobtrailError) else type(exc).__name__
        rt.repo.record_audit(
            actor=actor, action=action, target=target, params=params, result=f"error: {code}"
        )
        raise
    rt.repo.record_audit(
        actor=actor, action=action, target=target, params=params, result="; ".join(["ok", *outcome])
    )


# ---- jobs ------------------------------------------------------------------------------------------
def retry_job(rt: Runtime, job_id: str, *, actor: str, reason: str = "retry") -> Job:
    """Reopen a failed, timed-out or dead-lettered job as a new attempt and queue it again."""
    with audited(rt, actor=actor, action=f"job.{reason}", target=job_id, params={}) as outcome:
        job = rt.repo.retry(job_id, actor=actor)
        queue_reopened(rt, job, reason)
        outcome.append(f"attempt {job.attempt}")
        return job


def queue_reopened(rt: Runtime, job: Job, reason: str) -> None:
    """Publish a reopened job's message. If Pub/Sub refuses, the job stays reopened without one:
    the sweeper times it out at its stage's limit, and it can be retried again then. A reported
    pipeline (no work topic) has nothing to queue: its own service picks the reopened job up."""
    if get_pipeline(job.pipeline).topic is None:
        return
    try:
        message_id = publish_job(rt, job, reason=reason)
    except (GoogleAPICallError, TimeoutError) as exc:
        raise PubSubUnavailable(
            f"job {job.job_id} was reopened but its message could not be published ({type(exc).__name__}); "
            "the sweeper will time it out for another retry",
            jobId=job.job_id,
        ) from exc
    rt.repo.update_fields(job.job_id, queued_message_id=message_id)


def cancel_job(rt: Runtime, job_id: str, *, actor: str) -> Job:
    """A job that no handler is running (queued, between steps, waiting on a callback) is cancelled
    at once, so it never starts or resumes; one inside a step is stopped by its worker, which looks
    for ``cancelRequested`` every cancel_check_seconds (1 s) while the step runs and cancels the job
    where it stands, abandoning the step's outside call. Cancelling a cancelled job changes nothing; a job
    that finished otherwise cannot be cancelled."""
    with audited(rt, actor=actor, action="job.cancel", target=job_id, params={}) as outcome:
        job = _cancel(rt, job_id, actor)
        outcome.append("cancelled" if job.status is JobStatus.CANCELLED else "cancel requested")
        return job


def _cancel(rt: Runtime, job_id: str, actor: str) -> Job:
    job = rt.repo.get_job(job_id)
    if job.status is JobStatus.CANCELLED:
        return job
    if job.status.is_terminal:
        raise IllegalTransition(f"job {job_id} already finished ({job.stage})", jobId=job_id, stage=job.stage)
    spec = get_pipeline(job.pipeline)
    running_stages = {step.start for step in get_steps(job.pipeline)}
    if job.stage not in running_stages:
        try:
            return rt.repo.transition(
                job_id,
                Transition(
                    spec.cancelled.name,
                    actor=actor,
                    expected_stage=job.stage,
                    message=f"cancelled by {actor}",
                ),
            ).job
        except TransitionConflict:
            pass  # a worker picked it up meanwhile: fall through to a cooperative cancel
    rt.repo.request_cancel(job_id)
    job = rt.repo.get_job(job_id)
    if job.status.is_terminal and job.status is not JobStatus.CANCELLED:
        raise IllegalTransition(
            f"job {job_id} finished ({job.stage}) before it could be cancelled", jobId=job_id, stage=job.stage
        )
    return job


# ---- dead letters ------------------------------------------------------------------------------
class DeadLetterFilter(CamelModel):
    """Which dead-lettered jobs a listing or a bulk replay covers (all of them when empty)."""

    pipeline: str | None = Field(None, min_length=1, max_length=64)
    account_id: str | None = Field(None, min_length=1, max_length=128)
    scenario_id: str | None = Field(None, min_length=1, max_length=128)
    user_id: str | None = Field(None, min_length=1, max_length=128)

    def describe(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump(by_alias=True).items() if v is not None}


def dead_letter_spec(
    flt: DeadLetterFilter, *, limit: int | None = None, after: str | None = None
) -> QuerySpec:
    """Jobs failed by the DLQ analyzer and not replayed since (a retry clears the error), oldest
    first. The error code alone identifies them: the analyzer sets it only with the failure."""
    equals: list[tuple[str, Any]] = [("error.code", DEAD_LETTERED)]
    for name, stored in (
        ("pipeline", "pipeline"),
        ("account_id", "accountId"),
        ("scenario_id", "scenarioId"),
        ("user_id", "userId"),
    ):
        value = getattr(flt, name)
        if value is not None:
            equals.append((stored, value))
    return QuerySpec(
        equals=tuple(equals), order=(("__name__", False),), limit=limit, after=(after,) if after else None
    )


def count_dead_letters(rt: Runtime, flt: DeadLetterFilter) -> int:
    return int(rt.repo.aggregate("jobs", dead_letter_spec(flt), count=True)["count"])


def _replay(rt: Runtime, job: Job, actor: str) -> Job:
    """Reopen one dead-lettered job, unless someone replayed it first, then queue it."""
    reopened = rt.repo.retry_unless_moved(
        job.job_id, actor=actor, expected_attempt=job.attempt, expected_error_code=DEAD_LETTERED
    )
    queue_reopened(rt, reopened, "replay")
    return reopened


def replay_job(rt: Runtime, job_id: str, *, actor: str, execution_id: str | None = None) -> Job:
    """Replay one dead-lettered job (named directly, or by its dead-lettered execution)."""
    target = execution_id or job_id
    params = {"executionId": execution_id} if execution_id else {"jobId": job_id}
    with audited(rt, actor=actor, action="dlq.replay", target=target, params=params) as outcome:
        if execution_id is not None and not rt.repo.get_execution(execution_id).queued_to_dlq:
            raise NotDeadLettered(f"execution {execution_id} was not dead-lettered")
        job = rt.repo.get_job(job_id)
        require_dead_lettered(job)
        reopened = _replay(rt, job, actor)
        outcome.append(f"job {job_id} attempt {reopened.attempt}")
        return reopened


@dataclass
class ReplayReport:
    matched: int  # dead letters matching the filter when the run started
    replayed: int = 0
    skipped: int = 0  # replayed by someone else meanwhile
    failed: int = 0
    remaining: int = 0  # still dead-lettered when the run ended
    pages: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.replayed + self.skipped + self.failed


def replay_dead_letters(
    rt: Runtime,
    flt: DeadLetterFilter,
    *,
    actor: str,
    limit: int = 1000,
    page_size: int = 100,
    on_progress: Callable[[ReplayReport], None] | None = None,
    concurrency: int = 8,
) -> ReplayReport:
    """Replay up to ``limit`` dead-lettered jobs matching ``flt``, a page at a time.

    Safe to rerun (a replayed job leaves the dead-letter set, so a rerun picks up what is left)
    and to run twice at once (each job reopens under a precondition, so exactly one run replays
    it and the other counts it as skipped). ``on_progress`` sees the report after every page.
    """
    params = {"filter": flt.describe(), "limit": limit, "pageSize": page_size}
    with audited(rt, actor=actor, action="dlq.replay_bulk", target="dlq", params=params) as outcome:
        report = ReplayReport(matched=min(count_dead_letters(rt, flt), limit))
        if on_progress:
            on_progress(report)
        after: str | None = None
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay") as pool:
            while report.processed < limit:
                page = rt.repo.find_jobs(
                    dead_letter_spec(flt, limit=min(page_size, limit - report.processed), after=after)
                )
                if not page:
                    break
                for job, result in zip(
                    page, pool.map(lambda j: _replay_outcome(rt, j, actor), page), strict=True
                ):
                    _tally(report, job, result)
                report.pages += 1
                after = page[-1].job_id
                if on_progress:
                    on_progress(report)
        report.remaining = count_dead_letters(rt, flt)
        outcome.append(
            f"replayed {report.replayed}, skipped {report.skipped}, failed {report.failed}, "
            f"remaining {report.remaining}"
        )
        return report


def _replay_outcome(rt: Runtime, job: Job, actor: str) -> Job | Exception:
    try:
        return _replay(rt, job, actor)
    except TransitionConflict as exc:
        return exc
    except (JobtrailError, GoogleAPICallError, TimeoutError) as exc:
        # Reopened but not published (or not reopened at all): reported, never silently lost.
        # A reopened job without a message is timed out by the sweeper and can be retried.
        log.warning("replay of job %s failed: %s", job.job_id, type(exc).__name__)
        return exc


def _tally(report: ReplayReport, job: Job, result: Job | Exception) -> None:
    if isinstance(result, Job):
        report.replayed += 1
    elif isinstance(result, TransitionConflict):
        report.skipped += 1
    else:
        report.failed += 1
        if len(report.failures) < MAX_REPORTED_FAILURES:
            report.failures.append({"jobId": job.job_id, "error": type(result).__name__})


def replay_selected(
    rt: Runtime,
    jobs: list[Job],
    *,
    actor: str,
    as_of: datetime,
    replay_id: str,
    concurrency: int = 8,
) -> ReplayReport:
    """Replay each of ``jobs`` (dead letters an operator selected) once, however many runs of the
    same selection overlap: a job reopens only while it is still at the attempt read and still
    dead-lettered, and only if it was last changed before ``as_of`` (the preview's time), so one
    that was replayed and dead-lettered again since is not replayed a second time. Each job
    replayed gets its own audit record, the run one more with its counts."""
    params = {"jobs": len(jobs), "asOf": as_of.isoformat(), "replayId": replay_id}
    with audited(rt, actor=actor, action="dlq.replay_selection", target="dlq", params=params) as outcome:
        report = ReplayReport(matched=len(jobs))
        due = [job for job in jobs if job.updated_at < as_of]
        report.skipped += len(jobs) - len(due)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay") as pool:
            for job, result in zip(
                due, pool.map(lambda j: _replay_once(rt, j, actor, replay_id), due), strict=True
            ):
                _tally(report, job, result)
        report.pages = 1
        outcome.append(f"replayed {report.replayed}, skipped {report.skipped}, failed {report.failed}")
        return report


def _replay_once(rt: Runtime, job: Job, actor: str, replay_id: str) -> Job | Exception:
    try:
        # The precondition comes before the audit: a job another run replayed was not replayed here.
        reopened = rt.repo.retry_unless_moved(
            job.job_id, actor=actor, expected_attempt=job.attempt, expected_error_code=DEAD_LETTERED
        )
        with audited(
            rt, actor=actor, action="dlq.replay", target=job.job_id, params={"replayId": replay_id}
        ) as outcome:
            queue_reopened(rt, reopened, "replay")
            outcome.append(f"job {job.job_id} attempt {reopened.attempt}")
        return reopened
    except TransitionConflict as exc:
        return exc
    except (JobtrailError, GoogleAPICallError, TimeoutError) as exc:
        log.warning("replay of job %s failed: %s", job.job_id, type(exc).__name__)
        return exc


def input_diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What an edit changes, field by field (nested maps by dotted path; lists and values whole)."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[dict[str, Any]] = []
        for key in list(dict.fromkeys([*before, *after])):
            where = f"{path}.{key}" if path else str(key)
            if key not in after:
                changes.append({"field": where, "change": "removed", "before": before[key], "after": None})
            elif key not in before:
                changes.append({"field": where, "change": "added", "before": None, "after": after[key]})
            else:
                changes += input_diff(before[key], after[key], where)
        return changes
    if before == after and type(before) is type(after):
        return []
    return [{"field": path or "(input)", "change": "changed", "before": before, "after": after}]


def require_dead_lettered(job: Job) -> None:
    if job.error is None or job.error.code != DEAD_LETTERED:
        raise NotDeadLettered(
            f"job {job.job_id} is not in the dead-letter queue ({job.stage})", jobId=job.job_id
        )


def edit_dead_letter_input(
    rt: Runtime, job: Job, new_input: dict[str, Any], *, actor: str
) -> tuple[Job, list[dict[str, Any]]]:
    """Replace a dead letter's input with ``new_input`` (already checked against its pipeline's
    input model), unless it moved meanwhile; (the job with its new input, the changes). Audited
    with the input before and after, redacted as the attempts' payload snapshots are."""
    changes = input_diff(job.input, new_input)
    redactor = Redactor(secret_values(rt.settings))
    params = {
        "before": redactor.redact(job.input),
        "after": redactor.redact(new_input),
        "changed": [c["field"] for c in changes],
    }
    with audited(rt, actor=actor, action="dlq.edit_input", target=job.job_id, params=params) as outcome:
        require_dead_lettered(job)
        if changes:
            rt.repo.replace_input_unless_moved(
                job.job_id, new_input, expected_attempt=job.attempt, expected_error_code=DEAD_LETTERED
            )
        outcome.append(f"{len(changes)} field(s) changed")
    return job.model_copy(update={"input": new_input}), changes


# ---- queues --------------------------------------------------------------------------------------
def worker_queues(rt: Runtime) -> dict[str, str]:
    """Pausable queues: the topology's push subscriptions, name -> topic."""
    topology = load_topology(rt.settings.topology_file)
    return {name: sub.topic for name, sub in topology.subscriptions.items() if sub.push_to}


def _subscription_path(rt: Runtime, name: str) -> str:
    return f"projects/{rt.settings.google_cloud_project}/subscriptions/{rt.settings.topic_prefix}{name}"


def _known_queue(rt: Runtime, name: str) -> None:
    if name not in worker_queues(rt):
        raise QueueNotFound(f"no queue {name!r}", queues=sorted(worker_queues(rt)))


def _pubsub(rt: Runtime, name: str, call: Callable[[Any], Any]) -> Any:
    """Run one admin call with a subscriber client built for it (pause and resume are rare: not
    worth a client kept per instance), mapping Pub/Sub's errors to ours."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    rt.clients.point_at_emulators()
    client = pubsub_v1.SubscriberClient()
    try:
        return call(client)
    except GoogleNotFound:
        raise QueueNotFound(f"subscription {rt.settings.topic_prefix}{name} does not exist") from None
    except GoogleAPICallError as exc:
        raise PubSubUnavailable(f"Pub/Sub refused the change ({type(exc).__name__}); try again") from None
    finally:
        client.close()


def pause_queue(rt: Runtime, name: str, *, actor: str) -> QueueState:
    """Stop delivery: the paused flag first (the worker nacks without work from then on), then the
    push endpoint is detached so Pub/Sub keeps the messages instead of delivering them (each nack
    would count toward dead-lettering). The detached push config is kept on the queue document."""
    from google.pubsub_v1.types import PushConfig

    _known_queue(rt, name)
    path = _subscription_path(rt, name)
    with audited(rt, actor=actor, action="queue.pause", target=name, params={}) as outcome:
        current = _pubsub(rt, name, lambda c: c.get_subscription(request={"subscription": path}).push_config)
        attached = PushConfig.to_dict(current) if current.push_endpoint else None
        saved = attached or rt.repo.get_queue(name).push_config
        state = rt.repo.set_queue_paused(name, True, actor=actor, push_config=saved)
        if attached:
            _pubsub(
                rt, name, lambda c: c.modify_push_config(request={"subscription": path, "push_config": {}})
            )
        outcome.append("push endpoint detached" if attached else "no push endpoint attached")
        return state


def resume_queue(rt: Runtime, name: str, *, actor: str) -> QueueState:
    """Deliver again: clear the flag (keeping the saved push config), re-attach the endpoint, then
    forget the saved config. A failure part-way leaves enough on the document to resume again."""
    from google.pubsub_v1.types import PushConfig

    _known_queue(rt, name)
    path = _subscription_path(rt, name)
    with audited(rt, actor=actor, action="queue.resume", target=name, params={}) as outcome:
        saved = rt.repo.get_queue(name).push_config
        state = rt.repo.set_queue_paused(name, False, actor=actor, push_config=saved)
        if saved:
            _pubsub(
                rt,
                name,
                lambda c: c.modify_push_config(
                    request={"subscription": path, "push_config": PushConfig(saved)}
                ),
            )
            state = rt.repo.set_queue_paused(name, False, actor=actor)
        outcome.append("push endpoint re-attached" if saved else "no push endpoint to re-attach")
        return state


def list_queues(rt: Runtime) -> list[tuple[QueueState, str]]:
    """Every pausable queue's state and topic."""
    return [(rt.repo.get_queue(name), topic) for name, topic in sorted(worker_queues(rt).items())]
