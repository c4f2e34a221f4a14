"""CSV export of every job matching a listing's filters, paged through Firestore with the listing's
own cursor, so the rows are written as they are read and memory does not grow with the count."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

from services.auth.principal import Principal
from services.jobs.models import Job
from services.reads.jobs import own_query
from services.reads.queries import JobExportQuery, job_cursor, plan_job_list
from services.runtime import Runtime

EXPORT_PAGE_SIZE = 200
# Spreadsheets run a cell that starts with one of these as a formula; an error message from an
# outside service must stay text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS: tuple[tuple[str, Callable[[Job], Any]], ...] = (
    ("jobId", lambda j: j.job_id),
    ("pipeline", lambda j: j.pipeline),
    ("status", lambda j: j.status.value),
    ("stage", lambda j: j.stage),
    ("attempt", lambda j: j.attempt),
    ("userId", lambda j: j.user_id),
    ("accountId", lambda j: j.account_id),
    ("scenarioId", lambda j: j.scenario_id),
    ("sourceId", lambda j: j.source_id),
    ("traceId", lambda j: j.trace_id),
    ("createdAt", lambda j: j.created_at.isoformat()),
    ("updatedAt", lambda j: j.updated_at.isoformat()),
    ("finishedAt", lambda j: j.finished_at.isoformat() if j.finished_at else ""),
    ("errorCode", lambda j: j.error.code if j.error else ""),
    ("errorMessage", lambda j: j.error.message if j.error else ""),
    ("costTotal", lambda j: j.cost.total),
)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def matching_jobs(rt: Runtime, query: JobExportQuery, page_size: int = EXPORT_PAGE_SIZE) -> Iterator[Job]:
    """Every job ``query`` matches, in its sort order, one Firestore page at a time."""
    cursor: str | None = None
    while True:
        page_query = query.page(page_size, cursor)
        plan = plan_job_list(page_query)
        page = rt.repo.find_jobs(plan.spec)
        yield from (job for job in page if plan.post_filter(job) and query.matches_search(job))
        if len(page) < page_size:
            return
        cursor = job_cursor(page_query, page[-1])


def export_jobs_csv(rt: Runtime, principal: Principal, query: JobExportQuery) -> Iterator[str]:
    """The CSV text, a header line then one line per job. Who may see what is settled here, before
    the first line, so a refusal is an error answer rather than a cut-off file."""
    query = own_query(principal, query)
    jobs = matching_jobs(rt, query)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow([name for name, _ in COLUMNS])
        for job in jobs:
            writer.writerow([_cell(value(job)) for _, value in COLUMNS])
            if buffer.tell() >= 16 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return lines()
