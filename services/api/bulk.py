"""Bulk retry and cancel by filter (services/bulk.py): a preview, then runs of at most ``limit``
jobs that the page (or the CLI) repeats while ``remaining`` > 0, showing progress between calls."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, Strict

from services.api.routing import ApiBlueprint, Call
from services.auth.principal import Principal
from services.bulk import BulkAction, JobFilter, count_matching, run_bulk
from services.errors import Forbidden
from services.jobs.models import CamelModel
from services.pipelines.spec import JobStatus
from services.reads.views import Envelope

bp = ApiBlueprint("bulk", __name__)


class BulkPreviewRequest(CamelModel):
    model_config = ConfigDict(extra="forbid")
    action: BulkAction
    filter: JobFilter = Field(default_factory=JobFilter)


class BulkRunRequest(BulkPreviewRequest):
    # Strict: a time is an RFC 3339 string, not a number of seconds.
    updated_before: Annotated[AwareDatetime, Strict()] = Field(
        description="The preview's asOf: only jobs last changed before it are acted on."
    )
    limit: int = Field(100, ge=1, le=1000, description="Jobs this call may act on; call again for more.")


class BulkPreview(Envelope):
    """How many jobs the action would take, by status, as of ``asOf``."""

    action: BulkAction
    matched: int
    by_status: dict[JobStatus, int]
    filter: JobFilter
    as_of: datetime


class BulkFailure(CamelModel):
    job_id: str
    error: str


class BulkResult(Envelope):
    """What this call did; ``remaining`` still match the filter afterwards."""

    action: BulkAction
    matched: int
    acted: int
    skipped: int = Field(description="Moved meanwhile, or acted on by another run (each job once).")
    failed: int
    remaining: int
    failures: list[BulkFailure]
    mode: Literal["bulk"] = "bulk"


def own_filter(principal: Principal, flt: JobFilter) -> JobFilter:
    """A plain user acts on their own jobs only."""
    if principal.is_admin:
        return flt
    if flt.user_id not in (None, principal.subject):
        raise Forbidden("users act on their own jobs only")
    return flt.model_copy(update={"user_id": principal.subject})


@bp.operation(
    "POST",
    "/api/bulk/preview",
    summary="Count the jobs a bulk retry or cancel would act on",
    body=BulkPreviewRequest,
    responses={200: BulkPreview},
    errors=(400, 401, 403),
)
def preview_bulk(call: Call, body: BulkPreviewRequest) -> BulkPreview:
    """Retry takes failed and timed-out jobs, cancel queued and running ones."""
    flt = own_filter(call.principal, body.filter)
    counts = count_matching(call.rt, body.action, flt)
    return BulkPreview(
        action=body.action,
        matched=sum(counts.values()),
        by_status=counts,
        filter=flt,
        as_of=call.rt.repo.clock(),
    )


@bp.operation(
    "POST",
    "/api/bulk",
    summary="Retry or cancel the jobs matching a filter, up to limit per call",
    body=BulkRunRequest,
    responses={200: BulkResult},
    errors=(400, 401, 403),
)
def run_bulk_action(call: Call, body: BulkRunRequest) -> BulkResult:
    """Each job is acted on once, however many calls overlap; every job acted on is audited."""
    report = run_bulk(
        call.rt,
        body.action,
        own_filter(call.principal, body.filter),
        actor=call.principal.actor,
        updated_before=body.updated_before,
        limit=body.limit,
        page_size=min(body.limit, 100),
    )
    return BulkResult(
        action=report.action,
        matched=report.matched,
        acted=report.acted,
        skipped=report.skipped,
        failed=report.failed,
        remaining=report.remaining,
        failures=[BulkFailure(job_id=f["jobId"], error=f["error"]) for f in report.failures],
    )
