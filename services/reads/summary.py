"""The dashboard header: queue depth, failure rate, durations, DLQ, stale jobs, cost.

Every number is a Firestore aggregation (count / sum / avg over index entries): no job is read,
however many there are.
"""

from __future__ import annotations

from services.auth.principal import Principal
from services.jobs.repository import QuerySpec
from services.reads.queries import COST_FIELD, DURATION_FIELD, SummaryQuery, summary_specs
from services.reads.views import CostSummary, Summary
from services.runtime import Runtime


def summary(rt: Runtime, principal: Principal, query: SummaryQuery) -> Summary:
    """The operational numbers cover the whole system; the cost covers the jobs the filters match,
    and only the caller's own jobs unless the caller is an admin."""
    repo = rt.repo
    now = repo.clock()
    user_id = None if principal.is_admin else principal.subject
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
