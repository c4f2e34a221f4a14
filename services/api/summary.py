"""The dashboard header: queue depth, failure rate, durations, DLQ, stale jobs, cost.

Every number is a Firestore aggregation (count / sum / avg over index entries): no job is read,
however many there are.
"""

from __future__ import annotations

from services.api.queries import COST_FIELD, DURATION_FIELD, SummaryQuery, summary_specs
from services.api.routing import ApiBlueprint, Call
from services.api.schemas import CostSummary, Summary
from services.jobs.repository import QuerySpec

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
    repo = call.rt.repo
    now = repo.clock()
    user_id = None if call.principal.is_admin else call.principal.subject
    specs = summary_specs(query, now, user_id)

    def count(spec: QuerySpec) -> int:
        return int(repo.aggregate("jobs", spec, count=True)["count"])

    finished, failed = count(specs.finished), count(specs.failed)
    cost = repo.aggregate("jobs", specs.cost, count=True, sum_of=COST_FIELD)
    durations = repo.aggregate("executions", specs.durations, avg_of=DURATION_FIELD)
    return Summary(
        queued=count(specs.queued),
        active=count(specs.running),
        finished_24h=finished,
        failed_24h=failed,
        failure_rate_24h=failed / finished if finished else None,
        # Firestore answers null for the mean of nothing; say so whatever the backend answers.
        mean_duration_ms_24h=durations.get("avg") if durations["count"] else None,
        dlq_size=count(specs.dead_letters),
        stale_jobs=count(specs.stale),
        cost=CostSummary(
            total=float(cost.get("sum") or 0.0),
            jobs=int(cost["count"]),
            account_id=query.accountId,
            scenario_id=query.scenarioId,
            user_id=user_id,
            created_from=query.createdFrom,
            created_to=query.createdTo,
        ),
        generated_at=now,
    )
