"""The operator console's endpoints on the emulators: the CSV export of a filter (every matching
job, paged through Firestore with the listing's cursor, a plain user's own only) and the audit
trail's time filter."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from services.api import create_app
from services.auth import mint_token
from services.jobs.models import JobCreate, JobError
from services.jobs.state_machine import Transition
from services.reads.export import matching_jobs
from services.reads.queries import JobExportQuery
from services.runtime import Runtime
from services.settings import Settings

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    return Runtime(settings, clients)


def auth(rt: Runtime, sub: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, sub, role)}"}


def make_jobs(rt: Runtime, n: int, user: str, *, fail_with: str | None = None) -> list[str]:
    ids = []
    for i in range(n):
        job, _ = rt.repo.create_job(
            JobCreate(
                pipeline="video",
                account_id="acc-x",
                scenario_id="scn",
                source_id=f"{user}-{i}",
                user_id=user,
                input={"videoUrl": "https://v/x.mp4"},
            )
        )
        if fail_with is not None:
            rt.repo.transition(job.job_id, Transition("downloading", actor="worker"))
            error = JobError(code="BOOM", message=fail_with)
            rt.repo.transition(job.job_id, Transition("failed", actor="worker", error=error))
        ids.append(job.job_id)
    return ids


def rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


def test_the_export_holds_every_matching_job_across_pages_and_streams(rt):
    mine = make_jobs(rt, 23, "alice")
    make_jobs(rt, 4, "bob")
    # Pages of 5: the read layer follows the listing's cursor to the end.
    every = list(matching_jobs(rt, JobExportQuery(userId="alice"), page_size=5))
    assert sorted(j.job_id for j in every) == sorted(mine)
    assert [j.created_at for j in every] == sorted((j.created_at for j in every), reverse=True)

    response = (
        create_app(rt)
        .test_client()
        .get("/api/exports/jobs.csv?sort=createdAt", headers=auth(rt, "ops", "admin"))
    )
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed and "attachment" in response.headers["Content-Disposition"]
    exported = rows(response.data)
    assert len(exported) == 27 and {r["userId"] for r in exported} == {"alice", "bob"}
    assert [r["createdAt"] for r in exported] == sorted(r["createdAt"] for r in exported)


def test_a_plain_users_export_has_only_their_jobs_and_cannot_ask_for_others(rt):
    make_jobs(rt, 3, "alice")
    theirs = make_jobs(rt, 2, "bob")
    client = create_app(rt).test_client()
    own = client.get("/api/exports/jobs.csv", headers=auth(rt, "alice"))
    assert {r["userId"] for r in rows(own.data)} == {"alice"} and len(rows(own.data)) == 3
    refused = client.get("/api/exports/jobs.csv?userId=bob", headers=auth(rt, "alice"))
    assert refused.status_code == 403 and refused.json["error"] == "FORBIDDEN"
    searched = client.get(f"/api/exports/jobs.csv?search={theirs[0]}", headers=auth(rt, "alice"))
    assert rows(searched.data) == []


def test_the_export_applies_status_and_search_and_keeps_cells_text(rt):
    failed = make_jobs(rt, 2, "alice", fail_with='=HYPERLINK("https://evil.example")')
    make_jobs(rt, 2, "alice")
    client = create_app(rt).test_client()
    body = client.get("/api/exports/jobs.csv?status=failed", headers=auth(rt, "ops", "admin")).data
    exported = rows(body)
    assert sorted(r["jobId"] for r in exported) == sorted(failed)
    assert {r["errorMessage"] for r in exported} == {'\'=HYPERLINK("https://evil.example")'}
    one = client.get(
        f"/api/exports/jobs.csv?search={failed[0][-8:].upper()}", headers=auth(rt, "ops", "admin")
    )
    assert [r["jobId"] for r in rows(one.data)] == [failed[0]]
    bad = client.get("/api/exports/jobs.csv?sort=sideways", headers=auth(rt, "ops", "admin"))
    assert bad.status_code == 400 and bad.json["error"] == "INVALID_INPUT"


def test_the_export_is_in_the_openapi_document_as_csv(rt):
    spec = create_app(rt).test_client().get("/openapi.json").json
    answer = spec["paths"]["/api/exports/jobs.csv"]["get"]["responses"]["200"]["content"]
    assert list(answer) == ["text/csv"] and answer["text/csv"]["schema"]["type"] == "string"
    params = {p["name"] for p in spec["paths"]["/api/exports/jobs.csv"]["get"]["parameters"]}
    assert {"status", "pipeline", "userId", "sort", "search"} <= params


def test_the_audit_trail_filters_by_time_and_a_user_sees_their_own_actions(rt):
    client = create_app(rt).test_client()
    for actor in ("user:alice", "user:bob"):
        rt.repo.record_audit(actor=actor, action="job.retry", target="job_x", params={}, result="ok")
    now = rt.repo.clock()
    everyone = client.get("/api/audit", headers=auth(rt, "ops", "admin")).json["audit"]
    assert {r["actor"] for r in everyone} >= {"user:alice", "user:bob"}
    later = (now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    earlier = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert client.get(f"/api/audit?since={later}", headers=auth(rt, "ops", "admin")).json["audit"] == []
    window = client.get(
        f"/api/audit?since={earlier}&until={later}&action=job.retry&actor=user:bob",
        headers=auth(rt, "ops", "admin"),
    ).json["audit"]
    assert [r["actor"] for r in window] == ["user:bob"]
    own = client.get("/api/audit", headers=auth(rt, "alice")).json["audit"]
    assert {r["actor"] for r in own} == {"user:alice"}
    assert client.get("/api/audit?actor=user:bob", headers=auth(rt, "alice")).status_code == 403
