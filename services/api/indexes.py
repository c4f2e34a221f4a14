"""Which composite indexes the API's queries need, derived from the queries themselves.

Each query shape (services/reads/queries.py) is built as a real Firestore query and read back from
its protobuf: equality filters, range filters, orders, aggregated fields. From that follows the
index Firestore needs: equality fields (any order), then the sort fields with their directions,
then an aggregated field. The emulator never enforces indexes, so this is how tests know.

Every composite index is written again on every write of a document it covers, so the file holds as
few as the queries allow: a query with only == filters and a sort is served by Firestore's index
merging from one index per filtered field, each (field, sort...), rather than one index per
combination of filters ("Taking advantage of index merging", Firestore's index overview).

    python -m services.api.indexes            # rewrite infra/firestore.indexes.json's "indexes"
    python -m services.api.indexes --check    # exit 1 if a needed index is missing
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import bulk
from services.jobs.repository import JobRepository, QuerySpec
from services.reads import queries
from services.settings import Settings

INDEXES_FILE = Path(__file__).resolve().parents[2] / "infra" / "firestore.indexes.json"
_EQUALITY_OPS = {"EQUAL", "IN", "ARRAY_CONTAINS", "ARRAY_CONTAINS_ANY"}
_NAME = "__name__"


@dataclass(frozen=True)
class IndexNeed:
    collection: str
    equality: frozenset[str]
    order: tuple[tuple[str, str], ...]  # (field, ASCENDING | DESCENDING)
    # Only == filters (no range, IN or array filter) and no aggregated field: Firestore can merge
    # one index per filtered field instead of needing the full combination.
    mergeable: bool = False

    @property
    def fields(self) -> set[str]:
        return set(self.equality) | {name for name, _ in self.order}

    @property
    def needs_composite(self) -> bool:
        """One field (filtered and/or sorted) is served by Firestore's automatic single-field index."""
        return len(self.fields) > 1

    def as_index(self) -> dict[str, Any]:
        fields = [{"fieldPath": name, "order": "ASCENDING"} for name in sorted(self.equality)]
        fields += [{"fieldPath": name, "order": direction} for name, direction in self.order]
        return {"collectionGroup": self.collection, "queryScope": "COLLECTION", "fields": fields}

    def parts(self) -> list[IndexNeed]:
        """The composite indexes that serve this query: itself, or where Firestore merges indexes,
        one (field, sort...) per filtered field (none with no sort: single-field indexes merge)."""
        if not self.needs_composite:
            return []
        if self.mergeable and len(self.equality) > 1:
            if not self.order:
                return []
            return [IndexNeed(self.collection, frozenset({f}), self.order) for f in sorted(self.equality)]
        return [self]

    def covered_by(self, index: dict[str, Any]) -> bool:
        if (
            index.get("collectionGroup") != self.collection
            or index.get("queryScope", "COLLECTION") != "COLLECTION"
        ):
            return False
        fields = [(f["fieldPath"], f.get("order")) for f in index.get("fields", [])]
        n = len(self.equality)
        return (
            len(fields) == n + len(self.order)
            and {name for name, _ in fields[:n]} == set(self.equality)
            and tuple(fields[n:]) == self.order
        )


def _field_filters(where: Any) -> Iterator[Any]:
    if where is None:
        return
    if "composite_filter" in where:
        for sub in where.composite_filter.filters:
            yield from _field_filters(sub)
    elif "field_filter" in where:
        yield where.field_filter


def need_of(structured_query: Any, prefix: str, aggregated: Iterable[str] = ()) -> IndexNeed:
    """The index a StructuredQuery (plus fields it sums or averages) needs."""
    collection = structured_query.from_[0].collection_id.removeprefix(prefix)
    equality: set[str] = set()
    ranges: list[str] = []
    only_equal = not aggregated
    where = structured_query.where if "where" in structured_query else None
    for f in _field_filters(where):
        op = f.op.name
        only_equal = only_equal and op == "EQUAL"
        (equality.add if op in _EQUALITY_OPS else ranges.append)(f.field.field_path)
    order = [(o.field.field_path, o.direction.name) for o in structured_query.order_by]
    if not order and ranges:
        order = [(ranges[0], "ASCENDING")]
    for name in aggregated:
        if name not in {n for n, _ in order} and name not in equality:
            order.append((name, "ASCENDING"))
    # The document id closing an order in the same direction (or ascending, alone) is implicit.
    if order and order[-1][0] == _NAME:
        implicit = order[-2][1] if len(order) > 1 else "ASCENDING"
        if order[-1][1] == implicit:
            order = order[:-1]
    return IndexNeed(
        collection=collection, equality=frozenset(equality), order=tuple(order), mergeable=only_equal
    )


def api_needs(repo: JobRepository) -> list[IndexNeed]:
    """The index need of every query and aggregation the API (and the control plane) can run."""
    prefix = repo.settings.collection_prefix
    needs: list[IndexNeed] = []

    def add(
        collection: str, spec: QuerySpec, aggregated: str | None = None, aggregation: bool = False
    ) -> None:
        if aggregation or aggregated:
            built = repo.build_aggregation(
                collection,
                spec,
                count=True,
                sum_of=aggregated if collection == "jobs" else None,
                avg_of=aggregated if collection != "jobs" else None,
            )
            needs.append(
                need_of(built._to_protobuf().structured_query, prefix, [aggregated] if aggregated else [])
            )
        else:
            needs.append(need_of(repo.build_query(collection, spec)._to_protobuf(), prefix))

    for spec in queries.job_list_shapes():
        add("jobs", spec)
    for spec in queries.execution_log_shapes():
        add("executions", spec)
    for spec in queries.audit_shapes():
        add("audit", spec)
    for spec, is_aggregation in queries.dead_letter_shapes():
        add("jobs", spec, aggregation=is_aggregation)
    for spec in bulk.count_shapes():
        add("jobs", spec, aggregation=True)
    for collection, spec, aggregated in queries.summary_shapes():
        add(collection, spec, aggregated, aggregation=True)
    return needs


def missing(needs: Iterable[IndexNeed], spec_file: dict[str, Any]) -> list[IndexNeed]:
    indexes = spec_file.get("indexes", [])
    out = []
    for need in needs:
        out += [part for part in need.parts() if not any(part.covered_by(i) for i in indexes)]
    return out


def unindexed_fields(needs: Iterable[IndexNeed], spec_file: dict[str, Any]) -> list[tuple[str, str]]:
    """Fields a query relies on whose automatic single-field index a fieldOverride switched off."""
    off = {
        (o["collectionGroup"], o["fieldPath"])
        for o in spec_file.get("fieldOverrides", [])
        if o.get("indexes") == []
    }
    return sorted({(n.collection, f) for n in needs if not n.needs_composite for f in n.fields} & off)


def render(needs: Iterable[IndexNeed], spec_file: dict[str, Any]) -> dict[str, Any]:
    """``spec_file`` with its indexes replaced by exactly what ``needs`` require, in a stable order."""
    unique = {json.dumps(p.as_index(), sort_keys=True): p.as_index() for n in needs for p in n.parts()}
    return {
        "indexes": [unique[k] for k in sorted(unique)],
        "fieldOverrides": spec_file.get("fieldOverrides", []),
    }


def _offline_repo() -> JobRepository:
    """A repository whose client only builds queries (nothing is sent)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    settings = Settings()
    client = firestore.Client(project=settings.google_cloud_project, credentials=AnonymousCredentials())
    return JobRepository(client, settings)


def main(argv: list[str]) -> int:
    spec_file = json.loads(INDEXES_FILE.read_text())
    needs = api_needs(_offline_repo())
    if "--check" in argv:
        gaps = missing(needs, spec_file)
        for need in gaps:
            print(f"missing: {json.dumps(need.as_index())}")
        return 1 if gaps else 0
    INDEXES_FILE.write_text(json.dumps(render(needs, spec_file), indent=2) + "\n")
    print(f"{INDEXES_FILE}: {len(render(needs, spec_file)['indexes'])} composite indexes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
