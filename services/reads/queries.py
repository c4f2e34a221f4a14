"""Read parameters -> indexed Firestore queries (``QuerySpec``), and page cursors.

Every query the API can send is one of the shapes the ``*_shapes()`` functions enumerate, and each
has a composite index in infra/firestore.indexes.json (tests/unit/test_api_indexes.py checks it,
because the emulator does not enforce indexes). A job listing picks the most selective indexed
combination of the filters it was given; filters beyond that narrow each page in memory, so a page
may hold fewer than ``limit`` jobs while ``nextCursor`` is still set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from services.control import DeadLetterFilter, dead_letter_spec
from services.errors import InvalidInput
from services.jobs.models import AuditRecord, CamelModel, Execution, ExecutionStatus, Job
from services.jobs.repository import QuerySpec
from services.pipelines.spec import JobStatus

MAX_ID = 128
MAX_TRACE_ID = 3 * MAX_ID + 2
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339_only(value: Any) -> Any:
    """Query-string times are RFC 3339 date-times, as the spec says; pydantic alone would also take
    a number of seconds since the epoch."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2025-01-31T12:00:00Z")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]


# ---- cursors -----------------------------------------------------------------------------------------
# A cursor is a position, not a secret: the last row's sort value (microseconds since the epoch)
# and its id, "1735787045678901~job_1". Every string the pattern admits names a real position, so
# the API accepts every cursor its schema allows (a position between rows simply starts there);
# anything else is 400.
ROW_ID = r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}"
TIMED_CURSOR = rf"^[0-9]{{1,18}}~{ROW_ID}$"
ID_CURSOR = rf"^{ROW_ID}$"
_LATEST = datetime.max.replace(tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timed_cursor(at: datetime, row_id: str) -> str:
    delta = at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}~{row_id}"


def decode_timed_cursor(cursor: str) -> tuple[datetime, str]:
    """(sort value, row id) of a cursor ``timed_cursor`` made; a position past the last
    representable time stands for that time."""
    if not re.match(TIMED_CURSOR, cursor):
        raise InvalidInput("cursor is not a position this listing hands out", error_field="cursor")
    micros, row_id = cursor.split("~", 1)
    try:
        at = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        at = _LATEST
    return min(at, _LATEST), row_id


def decode_id_cursor(cursor: str) -> str:
    if not re.match(ID_CURSOR, cursor):
        raise InvalidInput("cursor is not a position this listing hands out", error_field="cursor")
    return cursor


def timed_cursor_field() -> Any:
    return Field(None, pattern=TIMED_CURSOR, max_length=220, description="nextCursor of the previous page.")


# ---- jobs --------------------------------------------------------------------------------------------
SortKey = Literal["-createdAt", "createdAt", "-updatedAt"]
SORTS: dict[str, tuple[str, bool]] = {
    "-createdAt": ("createdAt", True),
    "createdAt": ("createdAt", False),
    "-updatedAt": ("updatedAt", True),
}
# The filter combinations that have their own composite index, most selective first. userId (the
# owner) may join any of them: non-admins always filter by their own.
INDEXED_FACETS: tuple[tuple[str, ...], ...] = (
    ("traceId",),
    ("accountId", "scenarioId"),
    ("scenarioId",),
    ("accountId",),
    ("pipeline", "status"),
    ("status",),
    ("stage",),
    ("pipeline",),
    (),
)
FACETS = ("traceId", "accountId", "scenarioId", "pipeline", "status", "stage")


class JobFilters(CamelModel):
    """The filters and sort of a job listing (the table page keeps them in its URL)."""

    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="ignore")

    status: JobStatus | None = None
    stage: str | None = Field(None, min_length=1, max_length=64)
    pipeline: str | None = Field(None, min_length=1, max_length=64)
    accountId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    scenarioId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    traceId: str | None = Field(None, min_length=1, max_length=MAX_TRACE_ID)
    userId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    createdFrom: Rfc3339 | None = Field(None, description="createdAt >= this")
    createdTo: Rfc3339 | None = Field(None, description="createdAt < this")
    sort: SortKey = "-createdAt"

    def facets(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in FACETS}
        return {k: (v.value if isinstance(v, JobStatus) else v) for k, v in given.items() if v is not None}


class JobListQuery(JobFilters):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = timed_cursor_field()


class JobExportQuery(JobFilters):
    search: str | None = Field(
        None, min_length=1, max_length=MAX_TRACE_ID, description="Part of the jobId or traceId (any case)."
    )

    def page(self, limit: int, cursor: str | None) -> JobListQuery:
        return JobListQuery.model_validate(
            {**self.model_dump(exclude={"search"}), "limit": limit, "cursor": cursor}
        )

    def matches_search(self, job: Job) -> bool:
        term = (self.search or "").lower()
        return not term or term in job.job_id.lower() or term in job.trace_id.lower()


@dataclass(frozen=True)
class JobListPlan:
    spec: QuerySpec
    # Filters the index does not cover, applied to each fetched page.
    post_filter: Callable[[Job], bool]


def plan_job_list(q: JobListQuery) -> JobListPlan:
    facets = q.facets()
    indexed = next(combo for combo in INDEXED_FACETS if all(name in facets for name in combo))
    equals: list[tuple[str, Any]] = [(name, facets[name]) for name in indexed]
    if q.userId is not None:
        equals.append(("userId", q.userId))
    sort_field, descending = SORTS[q.sort]
    # A range must be on the first sort field; sorted by updatedAt, the created range is a post-filter.
    range_in_query = sort_field == "createdAt" and (q.createdFrom or q.createdTo)
    after = decode_timed_cursor(q.cursor) if q.cursor else None
    spec = QuerySpec(
        equals=tuple(equals),
        range_field="createdAt" if range_in_query else None,
        range_from=q.createdFrom if range_in_query else None,
        range_to=q.createdTo if range_in_query else None,
        order=((sort_field, descending),),
        limit=q.limit,
        after=after,
    )
    leftover = {name: value for name, value in facets.items() if name not in indexed}
    created_range = None if range_in_query else (q.createdFrom, q.createdTo)

    def post_filter(job: Job) -> bool:
        doc = job.to_doc()
        if any(doc.get(name) != value for name, value in leftover.items()):
            return False
        if created_range is not None:
            low, high = created_range
            if (low and job.created_at < low) or (high and job.created_at >= high):
                return False
        return True

    return JobListPlan(spec=spec, post_filter=post_filter)


def job_cursor(q: JobListQuery, last: Job) -> str:
    sort_field = SORTS[q.sort][0]
    return timed_cursor(last.created_at if sort_field == "createdAt" else last.updated_at, last.job_id)


def job_list_shapes() -> Iterator[QuerySpec]:
    """Every shape ``plan_job_list`` can build (values are placeholders)."""
    now = datetime.now(UTC)
    for combo in INDEXED_FACETS:
        for with_user in (False, True):
            for sort in SORTS:
                for ranged in (False, True):
                    values: dict[str, Any] = {name: "x" for name in combo}
                    if "status" in values:
                        values["status"] = JobStatus.RUNNING
                    q = JobListQuery(
                        **values,
                        userId="u" if with_user else None,
                        sort=sort,
                        createdFrom=now if ranged else None,
                    )
                    yield plan_job_list(q).spec
                    yield plan_job_list(
                        q.model_copy(update={"cursor": job_cursor(q, placeholder_job(now))})
                    ).spec


def placeholder_job(now: datetime) -> Job:
    return Job(
        pipeline="video",
        account_id="a",
        scenario_id="s",
        source_id="x",
        user_id="u",
        job_id="j",
        trace_id="a-s-x",
        status=JobStatus.QUEUED,
        stage="received",
        progress_text="",
        created_at=now,
        updated_at=now,
        heartbeat_at=now,
    )


# ---- execution logs (seed 004) ---------------------------------------------------------------------
class ExecutionLogQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    workflow_id: str | None = Field(None, min_length=1, max_length=64, description="The pipeline.")
    trace_id: str | None = Field(None, min_length=1, max_length=MAX_TRACE_ID)
    queued_to_dlq: bool | None = None
    status: ExecutionStatus | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = timed_cursor_field()


EXECUTION_FILTERS = {
    "workflow_id": "workflow",
    "trace_id": "trace_id",
    "queued_to_dlq": "queued_to_dlq",
    "status": "status",
}


def execution_log_spec(q: ExecutionLogQuery) -> QuerySpec:
    equals = []
    for param, stored in EXECUTION_FILTERS.items():
        value = getattr(q, param)
        if value is not None:
            equals.append((stored, value.value if isinstance(value, ExecutionStatus) else value))
    after = decode_timed_cursor(q.cursor) if q.cursor else None
    return QuerySpec(equals=tuple(equals), order=(("started_at", True),), limit=q.limit, after=after)


def execution_cursor(last: Execution) -> str:
    return timed_cursor(last.started_at, last.execution_id)


def execution_log_shapes() -> Iterator[QuerySpec]:
    sample = {"workflow_id": "video", "trace_id": "t", "queued_to_dlq": True, "status": ExecutionStatus.FAIL}
    for size in range(len(sample) + 1):
        for names in combinations(sample, size):
            yield execution_log_spec(ExecutionLogQuery(**{n: sample[n] for n in names}))


# ---- audit -------------------------------------------------------------------------------------------
class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    actor: str | None = Field(None, min_length=1, max_length=200)
    action: str | None = Field(None, min_length=1, max_length=64)
    target: str | None = Field(None, min_length=1, max_length=200)
    since: Rfc3339 | None = Field(None, description="at >= this")
    until: Rfc3339 | None = Field(None, description="at < this")
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = timed_cursor_field()


def audit_spec(q: AuditQuery) -> QuerySpec:
    equals = tuple((name, getattr(q, name)) for name in ("actor", "action", "target") if getattr(q, name))
    after = decode_timed_cursor(q.cursor) if q.cursor else None
    # The range is on the sort field, so each equality's index (actor, at desc) serves it too.
    ranged = q.since is not None or q.until is not None
    return QuerySpec(
        equals=equals,
        range_field="at" if ranged else None,
        range_from=q.since,
        range_to=q.until,
        order=(("at", True),),
        limit=q.limit,
        after=after,
    )


def audit_cursor(last: AuditRecord) -> str:
    return timed_cursor(last.at, last.audit_id)


def audit_shapes() -> Iterator[QuerySpec]:
    now = datetime.now(UTC)
    for size in range(4):
        for names in combinations(("actor", "action", "target"), size):
            for ranged in (False, True):
                yield audit_spec(AuditQuery(**{n: "x" for n in names}, since=now if ranged else None))


# ---- dead letters ------------------------------------------------------------------------------------
class DeadLetterQuery(CamelModel):
    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="ignore")

    pipeline: str | None = Field(None, min_length=1, max_length=64)
    accountId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    scenarioId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    userId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(
        None, pattern=ID_CURSOR, max_length=200, description="nextCursor of the previous page."
    )

    def to_filter(self) -> DeadLetterFilter:
        return DeadLetterFilter(
            pipeline=self.pipeline,
            account_id=self.accountId,
            scenario_id=self.scenarioId,
            user_id=self.userId,
        )


def dead_letter_page_spec(q: DeadLetterQuery) -> QuerySpec:
    after = decode_id_cursor(q.cursor) if q.cursor else None
    return dead_letter_spec(q.to_filter(), limit=q.limit, after=after)


def dead_letter_shapes() -> Iterator[tuple[QuerySpec, bool]]:
    """(spec, is_aggregation): the listing, its count, and the bulk replay's pages."""
    names = ("pipeline", "account_id", "scenario_id", "user_id")
    for size in range(len(names) + 1):
        for chosen in combinations(names, size):
            flt = DeadLetterFilter(**{n: "x" for n in chosen})
            yield dead_letter_spec(flt, limit=10, after="j"), False
            yield dead_letter_spec(flt), True


class DeadLetterBoardFilter(CamelModel):
    """Which dead letters the dead-letters page shows or a replay takes: all given fields match.
    ``cause`` is the error code of the job's last failed attempt (UNKNOWN when none was recorded);
    ``since``/``until`` bound when it was dead-lettered."""

    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="forbid")

    pipeline: str | None = Field(None, min_length=1, max_length=64)
    cause: str | None = Field(None, min_length=1, max_length=64)
    since: Rfc3339 | None = Field(None, description="Dead-lettered at or after this.")
    until: Rfc3339 | None = Field(None, description="Dead-lettered before this.")
    userId: str | None = Field(None, min_length=1, max_length=MAX_ID)


class DeadLetterBoardQuery(DeadLetterBoardFilter):
    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="ignore")

    limit: int = Field(200, ge=1, le=1000, description="Rows to list (groups and counts cover all).")


# Dead letters the page reads per view: groups need them all in hand (Firestore cannot group), and
# a dead-letter queue past this size is an incident to replay by filter, oldest first, not to browse.
MAX_DEAD_LETTERS_SCANNED = 2000


def dead_letter_scan_spec(user_id: str | None) -> QuerySpec:
    """Every dead letter (a user's own), oldest first, up to the scan's limit."""
    return dead_letter_spec(DeadLetterFilter(user_id=user_id), limit=MAX_DEAD_LETTERS_SCANNED + 1)


# ---- summary -----------------------------------------------------------------------------------------
class SummaryQuery(CamelModel):
    """Filters for the cost part of the summary (issue 5: cost per account and scenario)."""

    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="ignore")

    accountId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    scenarioId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    createdFrom: Rfc3339 | None = Field(None, description="createdAt >= this")
    createdTo: Rfc3339 | None = Field(None, description="createdAt < this")


@dataclass(frozen=True)
class SummarySpecs:
    queued: QuerySpec
    running: QuerySpec
    finished: QuerySpec
    failed: QuerySpec
    stale: QuerySpec
    dead_letters: QuerySpec
    durations: QuerySpec  # executions
    cost: QuerySpec


FAILED = (JobStatus.FAILED.value, JobStatus.TIMED_OUT.value)
ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def summary_specs(q: SummaryQuery, now: datetime, user_id: str | None) -> SummarySpecs:
    since = now - timedelta(hours=24)
    cost_equals = tuple(
        (name, value)
        for name, value in (("userId", user_id), ("accountId", q.accountId), ("scenarioId", q.scenarioId))
        if value is not None
    )
    ranged = q.createdFrom is not None or q.createdTo is not None
    return SummarySpecs(
        queued=QuerySpec(equals=(("status", JobStatus.QUEUED.value),)),
        running=QuerySpec(equals=(("status", JobStatus.RUNNING.value),)),
        finished=QuerySpec(range_field="finishedAt", range_from=since),
        failed=QuerySpec(one_of=("status", FAILED), range_field="finishedAt", range_from=since),
        # stuckAt exists only on active jobs that expect something, so one range reads them.
        stale=QuerySpec(range_field="stuckAt", range_to=now),
        dead_letters=dead_letter_spec(DeadLetterFilter()),
        durations=QuerySpec(range_field="finished_at", range_from=since),
        cost=QuerySpec(
            equals=cost_equals,
            range_field="createdAt" if ranged else None,
            range_from=q.createdFrom,
            range_to=q.createdTo,
        ),
    )


COST_FIELD = "cost.total"
DURATION_FIELD = "action_duration_ms"


def summary_shapes() -> Iterator[tuple[str, QuerySpec, str | None]]:
    """(collection, spec, aggregated field) for every aggregation the summary can run."""
    now = datetime.now(UTC)
    for size in range(3):
        for names in combinations(("accountId", "scenarioId"), size):
            for user in (None, "u"):
                for ranged in (False, True):
                    q = SummaryQuery(**{n: "x" for n in names}, createdFrom=now if ranged else None)
                    specs = summary_specs(q, now, user)
                    yield "jobs", specs.cost, COST_FIELD
    specs = summary_specs(SummaryQuery(), now, None)
    for spec in (specs.queued, specs.running, specs.finished, specs.failed, specs.stale, specs.dead_letters):
        yield "jobs", spec, None
    yield "executions", specs.durations, DURATION_FIELD
