"""Reads of the dead-letter queue: what is in it, how many match a filter, and the dead-letters
page's view of it (grouped by pipeline, cause and day)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from services.auth.principal import Principal
from services.control import DEAD_LETTERED, DeadLetterFilter, count_dead_letters, worker_queues
from services.errors import Forbidden
from services.jobs.models import Job
from services.pipelines.registry import PIPELINES
from services.reads.jobs import visible_job
from services.reads.queries import (
    MAX_DEAD_LETTERS_SCANNED,
    DeadLetterBoardFilter,
    DeadLetterBoardQuery,
    DeadLetterQuery,
    dead_letter_page_spec,
    dead_letter_scan_spec,
)
from services.reads.views import (
    DeadLetterBoard,
    DeadLetterGroup,
    DeadLetterGroups,
    DeadLetterPage,
    DeadLetterPreview,
    JobView,
)
from services.runtime import Runtime

F = TypeVar("F", bound=DeadLetterBoardFilter)


def own_dead_letter_filter(principal: Principal) -> DeadLetterFilter:
    return DeadLetterFilter(user_id=None if principal.is_admin else principal.subject)


def dead_letters(rt: Runtime, principal: Principal, query: DeadLetterQuery) -> DeadLetterPage:
    """Oldest first; a plain user's own jobs only."""
    if not principal.is_admin:
        if query.userId not in (None, principal.subject):
            raise Forbidden("users list only their own jobs")
        query = query.model_copy(update={"userId": principal.subject})
    page = rt.repo.find_jobs(dead_letter_page_spec(query))
    now = rt.repo.clock()
    return DeadLetterPage(
        total=count_dead_letters(rt, query.to_filter()),
        jobs=[JobView.of(job, rt.settings, now) for job in page],
        next_cursor=page[-1].job_id if len(page) == query.limit else None,
    )


# ---- the dead-letters page ---------------------------------------------------------------------
UNKNOWN_CAUSE = "UNKNOWN"
FACETS: tuple[str, ...] = ("pipeline", "cause", "day")


def cause_of(job: Job) -> str:
    return (job.error.cause if job.error else None) or UNKNOWN_CAUSE


def dead_lettered_at(job: Job) -> datetime:
    return job.finished_at or job.updated_at


def _facets(job: Job) -> dict[str, str]:
    return {
        "pipeline": job.pipeline,
        "cause": cause_of(job),
        "day": dead_lettered_at(job).astimezone(UTC).date().isoformat(),
    }


def _matches(job: Job, flt: DeadLetterBoardFilter, *, ignore: str | None = None) -> bool:
    facets = _facets(job)
    if ignore != "pipeline" and flt.pipeline is not None and facets["pipeline"] != flt.pipeline:
        return False
    if ignore != "cause" and flt.cause is not None and facets["cause"] != flt.cause:
        return False
    if ignore != "day":
        at = dead_lettered_at(job)
        if (flt.since and at < flt.since) or (flt.until and at >= flt.until):
            return False
    return True


def own_board_filter(principal: Principal, flt: F) -> F:
    """A plain user's own dead letters only."""
    if principal.is_admin:
        return flt
    if flt.userId not in (None, principal.subject):
        raise Forbidden("users see their own dead letters only")
    return flt.model_copy(update={"userId": principal.subject})


@dataclass(frozen=True)
class DeadLetterScan:
    jobs: list[Job]  # every visible dead letter read, oldest first
    truncated: bool


def scan_dead_letters(rt: Runtime, user_id: str | None) -> DeadLetterScan:
    page = rt.repo.find_jobs(dead_letter_scan_spec(user_id))
    return DeadLetterScan(page[:MAX_DEAD_LETTERS_SCANNED], len(page) > MAX_DEAD_LETTERS_SCANNED)


def replay_subscriptions(rt: Runtime) -> dict[str, list[str]]:
    """Pipeline -> the worker subscriptions its replayed messages are delivered to."""
    by_topic: dict[str, list[str]] = {}
    for name, topic in sorted(worker_queues(rt).items()):
        by_topic.setdefault(topic, []).append(name)
    return {name: by_topic.get(spec.topic or "", []) for name, spec in sorted(PIPELINES.items())}


def dead_letter_board(rt: Runtime, principal: Principal, query: DeadLetterBoardQuery) -> DeadLetterBoard:
    """The page's view: the matching dead letters and the counts per pipeline, cause and day."""
    query = own_board_filter(principal, query)
    scan = scan_dead_letters(rt, query.userId)
    groups: dict[str, list[DeadLetterGroup]] = {}
    for facet in FACETS:
        counts = Counter(_facets(j)[facet] for j in scan.jobs if _matches(j, query, ignore=facet))
        groups[facet] = [DeadLetterGroup(value=v, count=n) for v, n in sorted(counts.items())]
    matching = [j for j in scan.jobs if _matches(j, query)]
    now = rt.repo.clock()
    return DeadLetterBoard(
        total=len(scan.jobs),
        matched=len(matching),
        truncated=scan.truncated,
        groups=DeadLetterGroups(**groups),
        subscriptions=replay_subscriptions(rt),
        jobs=[JobView.of(job, rt.settings, now) for job in matching[: query.limit]],
    )


def selected_dead_letters(
    rt: Runtime, principal: Principal, *, job_ids: list[str] | None, flt: DeadLetterBoardFilter | None
) -> list[Job]:
    """The dead letters a selection names, as they are now: the listed jobs (each one the caller
    may see, else 404; those no longer dead-lettered left out), or every one matching ``flt``."""
    if job_ids is not None:
        jobs = [visible_job(rt, principal, job_id) for job_id in dict.fromkeys(job_ids)]
        return [j for j in jobs if j.error is not None and j.error.code == DEAD_LETTERED]
    flt = own_board_filter(principal, flt or DeadLetterBoardFilter())
    return [j for j in scan_dead_letters(rt, flt.userId).jobs if _matches(j, flt)]


def preview_of(rt: Runtime, jobs: list[Job]) -> DeadLetterPreview:
    subscriptions = replay_subscriptions(rt)
    by_subscription: Counter[str] = Counter()
    for job in jobs:
        by_subscription.update(subscriptions.get(job.pipeline) or ["(reported pipeline: none)"])
    return DeadLetterPreview(
        matched=len(jobs),
        by_pipeline=dict(sorted(Counter(j.pipeline for j in jobs).items())),
        by_subscription=dict(sorted(by_subscription.items())),
        as_of=rt.repo.clock(),
    )
