"""Reads of the dead-letter queue: what is in it and how many match a filter."""

from __future__ import annotations

from services.auth.principal import Principal
from services.control import DeadLetterFilter, count_dead_letters
from services.errors import Forbidden
from services.reads.queries import DeadLetterQuery, dead_letter_page_spec
from services.reads.views import DeadLetterPage, JobView
from services.runtime import Runtime


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
