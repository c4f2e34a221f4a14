"""API parameters -> query shapes: the index picked, what is left to filter in memory, cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.errors import InvalidInput
from services.pipelines.spec import JobStatus
from services.reads.queries import (
    JobListQuery,
    decode_timed_cursor,
    job_cursor,
    placeholder_job,
    plan_job_list,
    timed_cursor,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_cursor_round_trips_with_microseconds():
    cursor = timed_cursor(NOW, "job_1")
    assert decode_timed_cursor(cursor) == (NOW, "job_1")


@pytest.mark.parametrize("cursor", ["0~a", "0~0", "999999999999999999~job_1", "1~A.b:c@d-e_f"])
def test_every_cursor_the_pattern_admits_is_a_position(cursor):
    at, row_id = decode_timed_cursor(cursor)
    assert at.tzinfo is UTC and row_id == cursor.split("~", 1)[1]
    assert JobListQuery(cursor=cursor).cursor == cursor


@pytest.mark.parametrize("cursor", ["0", "~job_1", "1~", "1~.", "1~__x__", "-1~a", "%%%", "e30", "1~a/b"])
def test_strings_that_are_no_position_are_invalid_input(cursor):
    with pytest.raises(InvalidInput, match="cursor"):
        decode_timed_cursor(cursor)
    with pytest.raises(ValidationError):
        JobListQuery(cursor=cursor)


def test_the_most_selective_indexed_filter_is_queried_and_the_rest_filtered_in_memory():
    plan = plan_job_list(JobListQuery(traceId="a-s-x", status=JobStatus.FAILED, userId="alice"))
    assert dict(plan.spec.equals) == {"traceId": "a-s-x", "userId": "alice"}
    job = placeholder_job(NOW)
    assert not plan.post_filter(job)  # queued, not failed
    assert plan.post_filter(job.model_copy(update={"status": JobStatus.FAILED}))


def test_pairs_with_their_own_index_are_queried_together():
    plan = plan_job_list(JobListQuery(pipeline="video", status=JobStatus.RUNNING, stage="processing"))
    assert dict(plan.spec.equals) == {"pipeline": "video", "status": "running"}
    job = placeholder_job(NOW).model_copy(update={"status": JobStatus.RUNNING})
    assert not plan.post_filter(job) and plan.post_filter(job.model_copy(update={"stage": "processing"}))


def test_created_range_is_in_the_query_when_sorted_by_creation_and_in_memory_otherwise():
    by_created = plan_job_list(JobListQuery(createdFrom=NOW, sort="createdAt"))
    assert by_created.spec.range_field == "createdAt" and by_created.spec.range_from == NOW
    by_updated = plan_job_list(
        JobListQuery(createdFrom=NOW, createdTo=NOW + timedelta(hours=1), sort="-updatedAt")
    )
    assert by_updated.spec.range_field is None and by_updated.spec.order == (("updatedAt", True),)
    job = placeholder_job(NOW)
    assert by_updated.post_filter(job)
    assert not by_updated.post_filter(job.model_copy(update={"created_at": NOW - timedelta(seconds=1)}))
    assert not by_updated.post_filter(job.model_copy(update={"created_at": NOW + timedelta(hours=1)}))


def test_a_cursor_continues_after_the_last_row_of_its_own_sort():
    q = JobListQuery(sort="-updatedAt", limit=2)
    job = placeholder_job(NOW).model_copy(update={"updated_at": NOW + timedelta(minutes=1)})
    next_page = plan_job_list(q.model_copy(update={"cursor": job_cursor(q, job)}))
    assert next_page.spec.after == (NOW + timedelta(minutes=1), job.job_id)
