"""The dashboard header's numbers (services/reads/summary.py)."""

from __future__ import annotations

from services.api.routing import ApiBlueprint, Call
from services.reads.queries import SummaryQuery
from services.reads.summary import summary
from services.reads.views import Summary

bp = ApiBlueprint("summary", __name__)


@bp.operation(
    "GET",
    "/api/summary",
    summary="Queued, active, failure rate and mean duration (24 h), DLQ, "
    "stale jobs, and cost per account and scenario",
    query=SummaryQuery,
    responses={200: Summary},
    errors=(400, 401),
)
def get_summary(call: Call, query: SummaryQuery) -> Summary:
    """The operational numbers cover the whole system; the cost covers the jobs the filters match,
    and only the caller's own jobs unless the caller is an admin."""
    return summary(call.rt, call.principal, query)
