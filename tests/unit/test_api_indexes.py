"""Every query and aggregation the API can build has its composite index in the file Terraform deploys.

The emulator answers any query, indexed or not; Google Cloud refuses an unindexed one at run time.
So the shapes are built here as real Firestore queries (offline: nothing is sent) and checked
against infra/firestore.indexes.json.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from services.api import indexes
from services.jobs.repository import JobRepository, QuerySpec
from services.settings import Settings


@pytest.fixture(scope="module")
def repo() -> JobRepository:
    # A test prefix, to show that the collection group is read without it.
    settings = Settings(collection_prefix="tprefix_")
    return JobRepository(firestore.Client(project="offline", credentials=AnonymousCredentials()), settings)


@pytest.fixture(scope="module")
def spec_file() -> dict:
    return json.loads(indexes.INDEXES_FILE.read_text())


def test_every_api_query_has_its_composite_index(repo, spec_file):
    needs = indexes.api_needs(repo)
    assert len(needs) > 100 and any(n.needs_composite for n in needs)
    assert [n.as_index() for n in indexes.missing(needs, spec_file)] == []


def test_no_query_relies_on_a_field_whose_single_field_index_is_switched_off(repo, spec_file):
    assert indexes.unindexed_fields(indexes.api_needs(repo), spec_file) == []


def test_the_file_lists_exactly_the_needed_indexes_and_keeps_its_field_overrides(repo, spec_file):
    """`python -m services.api.indexes` regenerates it; an index nobody needs costs every write."""
    assert indexes.render(indexes.api_needs(repo), spec_file) == spec_file
    assert any(o.get("ttl") for o in spec_file["fieldOverrides"])


def need(
    repo: JobRepository, spec: QuerySpec, *, aggregate: bool = False, sum_of: str | None = None
) -> indexes.IndexNeed:
    if aggregate or sum_of:
        built = repo.build_aggregation("jobs", spec, count=True, sum_of=sum_of)
        return indexes.need_of(built._to_protobuf().structured_query, "tprefix_", [sum_of] if sum_of else [])
    return indexes.need_of(repo.build_query("jobs", spec)._to_protobuf(), "tprefix_")


def test_equality_then_sort_with_the_id_tiebreak_implicit(repo):
    got = need(
        repo,
        QuerySpec(
            equals=(("userId", "u"), ("status", "running")),
            order=(("createdAt", True),),
            after=(datetime.now(UTC), "job_1"),
            limit=5,
        ),
    )
    assert got == indexes.IndexNeed(
        "jobs", frozenset({"userId", "status"}), (("createdAt", "DESCENDING"),), mergeable=True
    )
    assert got.covered_by(
        {
            "collectionGroup": "jobs",
            "fields": [
                {"fieldPath": "status", "order": "ASCENDING"},
                {"fieldPath": "userId", "order": "ASCENDING"},
                {"fieldPath": "createdAt", "order": "DESCENDING"},
            ],
        }
    )
    assert not got.covered_by(
        {
            "collectionGroup": "jobs",
            "fields": [
                {"fieldPath": "status", "order": "ASCENDING"},
                {"fieldPath": "userId", "order": "ASCENDING"},
                {"fieldPath": "createdAt", "order": "ASCENDING"},
            ],
        }
    )


def test_single_field_queries_need_no_composite_index(repo):
    assert not need(
        repo, QuerySpec(equals=(("error.code", "DEAD_LETTERED"),), order=(("__name__", False),))
    ).needs_composite
    assert not need(repo, QuerySpec(range_field="staleAt", range_to=datetime.now(UTC))).needs_composite
    assert not need(repo, QuerySpec(), sum_of="cost.total").needs_composite


def test_an_aggregated_field_joins_the_index_after_the_filters(repo):
    got = need(
        repo,
        QuerySpec(
            one_of=("status", ("failed", "timed_out")), range_field="finishedAt", range_from=datetime.now(UTC)
        ),
        aggregate=True,
    )
    assert got == indexes.IndexNeed("jobs", frozenset({"status"}), (("finishedAt", "ASCENDING"),))
    summed = need(repo, QuerySpec(equals=(("accountId", "a"),)), sum_of="cost.total")
    assert summed == indexes.IndexNeed("jobs", frozenset({"accountId"}), (("cost.total", "ASCENDING"),))


def test_a_descending_id_order_alone_is_not_implicit(repo):
    got = need(repo, QuerySpec(equals=(("pipeline", "video"),), order=(("__name__", True),)))
    assert got.order == (("__name__", "DESCENDING"),) and got.needs_composite


def test_equality_filters_with_a_sort_are_served_by_one_index_per_field(repo):
    """Firestore merges (field, sort) indexes for == filters: three filters need three indexes, not
    one per combination; with no sort, the automatic single-field indexes merge."""
    order = (("createdAt", "DESCENDING"),)
    got = need(
        repo,
        QuerySpec(
            equals=(("userId", "u"), ("status", "running"), ("pipeline", "video")),
            order=(("createdAt", True),),
        ),
    )
    assert got.parts() == [
        indexes.IndexNeed("jobs", frozenset({"pipeline"}), order),
        indexes.IndexNeed("jobs", frozenset({"status"}), order),
        indexes.IndexNeed("jobs", frozenset({"userId"}), order),
    ]
    assert need(repo, QuerySpec(equals=(("userId", "u"), ("status", "running")))).parts() == []


def test_a_range_filter_or_an_aggregation_keeps_the_full_composite_index(repo):
    ranged = need(
        repo,
        QuerySpec(
            equals=(("userId", "u"), ("status", "running")),
            range_field="createdAt",
            range_from=datetime.now(UTC),
        ),
    )
    assert ranged.parts() == [ranged] and not ranged.mergeable
    summed = need(repo, QuerySpec(equals=(("accountId", "a"), ("userId", "u"))), sum_of="cost.total")
    assert summed.parts() == [summed]


def test_index_merging_keeps_the_file_small(spec_file):
    """Every composite index is rewritten on each write of a job it covers."""
    jobs = [i for i in spec_file["indexes"] if i["collectionGroup"] == "jobs"]
    assert len(jobs) <= 60
