"""Every read endpoint of the API against the Firestore emulator, and who may see what.

The app runs in-process (Flask test client) on the test's own collections; jobs are made through
the repository, as the pipelines make them.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import SecretStr

from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import hash_api_key, mint_token
from services.jobs.models import (
    Execution,
    ExecutionStatus,
    Job,
    JobCreate,
    JobError,
    Liveness,
    heartbeat_of,
    liveness_of,
)
from services.jobs.state_machine import Transition
from services.reads.queries import SummaryQuery, summary_specs
from services.runtime import Runtime
from services.settings import Settings

pytestmark = pytest.mark.emulator

API_KEY = "jt_emulator_key_0123456789"


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    tuned = settings.model_copy(
        update={
            "api_key_hashes": {hash_api_key(API_KEY): "ops-bot"},
            "jwt_secret": SecretStr("emulator-tests-secret-of-enough-length"),
        }
    )
    # Topics and (pull) subscriptions, so retries can publish.
    bootstrap(tuned.google_cloud_project, prefix=tuned.topic_prefix)
    return Runtime(tuned, clients)


@pytest.fixture
def client(rt):
    return create_app(rt).test_client()


def auth(rt: Runtime, sub: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, sub, role)}"}


def make_job(
    rt: Runtime,
    user: str = "alice",
    account: str = "acc-1",
    scenario: str = "scn-1",
    source: str = "src-1",
    pipeline: str = "video",
) -> Job:
    job, _ = rt.repo.create_job(
        JobCreate(
            pipeline=pipeline,
            account_id=account,
            scenario_id=scenario,
            source_id=source,
            user_id=user,
            input={"videoUrl": "https://v/x.mp4"},
        ),
        actor="test",
    )
    return job


def walk(rt: Runtime, job: Job, *stages: str) -> Job:
    for stage in stages:
        job = rt.repo.transition(job.job_id, Transition(stage, actor="worker")).job
    return job


def fail(rt: Runtime, job: Job, code: str = "BOOM") -> Job:
    return rt.repo.transition(
        job.job_id,
        Transition(
            "failed", actor="worker", message=code, error=JobError(code=code, message=code, retryable=True)
        ),
    ).job


def record_execution(
    rt: Runtime, job: Job, message_id: str, status: ExecutionStatus, *, dead_lettered: bool = False
) -> Execution:
    execution = Execution(
        execution_id=rt.repo.execution_id(message_id, 1),
        message_id=message_id,
        job_id=job.job_id,
        workflow=job.pipeline,
        subscription="video-worker",
        attempt=1,
        started_at=rt.repo.clock(),
        trace_id=job.trace_id,
        account_id=job.account_id,
        scenario_id=job.scenario_id,
        source_id=job.source_id,
        payload_snapshot={"data": {"job_id": job.job_id}},
    )
    rt.repo.start_execution(execution)
    rt.repo.finish_execution(
        execution.execution_id,
        status,
        last_error="boom" if status is ExecutionStatus.FAIL else None,
        retryable=status is ExecutionStatus.FAIL,
        queued_to_dlq=dead_lettered,
    )
    return rt.repo.get_execution(execution.execution_id)


# ---- one job ---------------------------------------------------------------------------------------
def test_job_status_has_heartbeat_error_cost_ids_and_links(rt, client):
    job = walk(rt, make_job(rt), "downloading")
    rt.repo.add_cost(job.job_id, "compute", 0.25)
    rt.repo.update_fields(job.job_id, otel_trace_id="0af7651916cd43dd8448eb211c80319c")
    fail(rt, job, "PROCESSOR_DOWN")
    body = client.get(f"/api/jobs/{job.job_id}", headers=auth(rt, "alice")).get_json()
    assert body["success"] is body["ok"] is True
    assert (body["jobId"], body["status"], body["stage"]) == (job.job_id, "failed", "failed")
    assert (body["traceId"], body["accountId"], body["scenarioId"], body["sourceId"]) == (
        "acc-1-scn-1-src-1",
        "acc-1",
        "scn-1",
        "src-1",
    )
    assert body["error"]["code"] == "PROCESSOR_DOWN" and body["error"]["stage"] == "downloading"
    assert body["cost"]["total"] == pytest.approx(0.25) and body["attempt"] == 1
    assert body["heartbeat"] == {"secondsSinceUpdate": 0, "isStale": False}
    project = rt.settings.google_cloud_project
    assert body["links"]["trace"] == (
        f"https://console.cloud.google.com/traces/list?project={project}&tid=0af7651916cd43dd8448eb211c80319c"
    )
    assert "labels.traceId%3D%22acc-1-scn-1-src-1%22" in body["links"]["logs"]


def test_timeline_lists_every_stage_with_the_time_spent_in_it(rt, client):
    job = walk(rt, make_job(rt), "downloading", "downloaded")
    body = client.get(f"/api/jobs/{job.job_id}/events", headers=auth(rt, "alice")).get_json()
    assert [e["toStage"] for e in body["events"]] == ["received", "downloading", "downloaded"]
    assert body["events"][0]["durationMs"] is None and all(e["durationMs"] >= 0 for e in body["events"][1:])
    spans = body["stages"]
    assert [s["stage"] for s in spans] == ["received", "downloading", "downloaded"]
    assert spans[-1]["leftAt"] is None and spans[0]["durationMs"] == body["events"][1]["durationMs"]
    # each duration is truncated to whole milliseconds on its own
    assert abs(body["totalDurationMs"] - sum(e["durationMs"] for e in body["events"][1:])) <= 2


def test_executions_of_a_job_carry_the_seed_004_fields(rt, client):
    job = make_job(rt)
    record_execution(rt, job, "m1", ExecutionStatus.FAIL)
    body = client.get(f"/api/jobs/{job.job_id}/executions", headers=auth(rt, "alice")).get_json()
    [execution] = body["executions"]
    assert {
        "status",
        "retryable",
        "queued_to_dlq",
        "attempts",
        "last_error",
        "payload_snapshot",
        "action_duration_ms",
    } <= set(execution)
    assert (execution["status"], execution["retryable"], execution["last_error"]) == ("fail", True, "boom")
    assert execution["workflow_id"] == "video" and execution["attempts"] == 1


# ---- who sees what ---------------------------------------------------------------------------------------
JOB_ENDPOINTS = [("GET", ""), ("GET", "/events"), ("GET", "/executions"), ("POST", "/retry"), ("DELETE", "")]


@pytest.mark.parametrize("method,suffix", JOB_ENDPOINTS)
def test_another_users_job_is_exactly_as_missing_as_a_job_that_does_not_exist(rt, client, method, suffix):
    job = fail(rt, make_job(rt, user="alice"))
    theirs = client.open(f"/api/jobs/{job.job_id}{suffix}", method=method, headers=auth(rt, "bob"))
    missing_id = job.job_id[:-1] + ("0" if job.job_id[-1] != "0" else "1")
    missing = client.open(f"/api/jobs/{missing_id}{suffix}", method=method, headers=auth(rt, "bob"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == {**missing.get_json(), "message": f"Job {job.job_id} not found"}
    assert rt.repo.get_job(job.job_id).status.value == "failed"  # bob changed nothing


@pytest.mark.parametrize("method,suffix", JOB_ENDPOINTS)
@pytest.mark.parametrize("who", ["owner", "admin", "machine"])
def test_the_owner_and_admins_reach_every_job_endpoint(rt, client, method, suffix, who):
    job = fail(rt, make_job(rt, user="alice"))
    headers = {
        "owner": auth(rt, "alice"),
        "admin": auth(rt, "root", "admin"),
        "machine": {"X-API-Key": API_KEY},
    }
    response = client.open(f"/api/jobs/{job.job_id}{suffix}", method=method, headers=headers[who])
    # retry answers 202; cancelling a failed job is refused as a conflict, not hidden
    expected = {"/retry": 202}.get(suffix, 409 if method == "DELETE" else 200)
    assert response.status_code == expected, response.get_json()


def test_users_list_only_their_own_jobs_and_admins_list_everyones(rt, client):
    mine = {make_job(rt, user="alice", source=f"a{i}").job_id for i in range(3)}
    theirs = {make_job(rt, user="bob", source=f"b{i}").job_id for i in range(2)}

    def listed(headers: dict[str, str], query: str = "") -> set[str]:
        response = client.get(f"/api/jobs?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return {j["jobId"] for j in response.get_json()["jobs"]}

    assert listed(auth(rt, "alice")) == mine
    assert listed(auth(rt, "alice"), "userId=alice") == mine
    assert listed(auth(rt, "root", "admin")) == mine | theirs
    assert listed({"X-API-Key": API_KEY}, "userId=bob") == theirs
    forbidden = client.get("/api/jobs?userId=bob", headers=auth(rt, "alice"))
    assert forbidden.status_code == 403 and forbidden.get_json()["error"] == "FORBIDDEN"


# ---- search ---------------------------------------------------------------------------------------
@pytest.fixture
def catalogue(rt) -> dict[str, Job]:
    jobs = {
        "a1": make_job(rt, account="acc-1", scenario="scn-1", source="s1"),
        "a2": walk(rt, make_job(rt, account="acc-1", scenario="scn-2", source="s2"), "downloading"),
        "b1": fail(rt, make_job(rt, account="acc-2", scenario="scn-1", source="s3", user="bob")),
        "m1": make_job(rt, account="acc-2", scenario="scn-9", source="s4", pipeline="music_clips"),
    }
    return {k: rt.repo.get_job(j.job_id) for k, j in jobs.items()}


@pytest.mark.parametrize(
    "query,expected",
    [
        ("status=running", {"a2"}),
        ("status=failed", {"b1"}),
        ("stage=received&pipeline=video", {"a1"}),
        ("pipeline=music_clips", {"m1"}),
        ("accountId=acc-1", {"a1", "a2"}),
        ("accountId=acc-2&scenarioId=scn-1", {"b1"}),
        ("scenarioId=scn-1", {"a1", "b1"}),
        ("traceId=acc-1-scn-2-s2", {"a2"}),
        ("userId=bob", {"b1"}),
        ("accountId=acc-1&status=queued", {"a1"}),  # status narrows the accountId page in memory
        ("pipeline=video&status=failed&userId=bob", {"b1"}),
    ],
)
def test_filters(rt, client, catalogue, query, expected):
    body = client.get(f"/api/jobs?{query}", headers={"X-API-Key": API_KEY}).get_json()
    names = {job.job_id: name for name, job in catalogue.items()}
    assert {names[j["jobId"]] for j in body["jobs"]} == expected


def test_created_range_and_sorts(rt, client, catalogue):
    ordered = sorted(catalogue.values(), key=lambda j: j.created_at)
    headers = {"X-API-Key": API_KEY}

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/jobs?{query}", headers=headers)
        return [j["jobId"] for j in response.get_json()["jobs"]]

    assert ids("sort=createdAt") == [j.job_id for j in ordered]
    assert ids("sort=-createdAt") == [j.job_id for j in reversed(ordered)]
    by_update = sorted(catalogue.values(), key=lambda j: j.updated_at, reverse=True)
    assert ids("sort=-updatedAt") == [j.job_id for j in by_update]
    second = ordered[1].created_at.isoformat().replace("+00:00", "Z")
    fourth = ordered[3].created_at.isoformat().replace("+00:00", "Z")
    window = f"createdFrom={second}&createdTo={fourth}"
    expected = [j.job_id for j in ordered[1:3]]
    assert ids(f"{window}&sort=createdAt") == expected
    assert sorted(ids(f"{window}&sort=-updatedAt")) == sorted(expected)  # range applied in memory


def test_cursor_pagination_visits_every_job_once(rt, client):
    made = {make_job(rt, source=f"p{i}").job_id for i in range(7)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"/api/jobs?{query}", headers=auth(rt, "alice")).get_json()
        seen += [j["jobId"] for j in body["jobs"]]
        pages += 1
        cursor = body["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(made) and len(seen) == len(made) and pages == 3


def test_a_cursor_is_a_position_any_listing_accepts_and_anything_else_is_refused(rt, client):
    first, second = (make_job(rt, source=f"c{i}") for i in range(2))
    assert second.created_at >= first.created_at
    cursor = client.get("/api/jobs?limit=1", headers=auth(rt, "alice")).get_json()["nextCursor"]
    # Newest first, the position is the second job's; oldest first, what lies after it is nothing.
    newest_first = client.get(f"/api/jobs?limit=5&cursor={cursor}", headers=auth(rt, "alice")).get_json()
    assert [j["jobId"] for j in newest_first["jobs"]] == [first.job_id]
    oldest_first = client.get(f"/api/jobs?sort=createdAt&cursor={cursor}", headers=auth(rt, "alice"))
    assert oldest_first.status_code == 200 and oldest_first.get_json()["jobs"] == []
    for bad in ("0", "abc", "1~"):
        response = client.get(f"/api/jobs?cursor={bad}", headers=auth(rt, "alice"))
        assert response.status_code == 400 and "cursor" in json.dumps(response.get_json())


# ---- execution logs -------------------------------------------------------------------------------
def test_execution_logs_filter_by_workflow_trace_dlq_and_status(rt, client):
    a, b = make_job(rt, source="x1"), make_job(rt, source="x2", pipeline="music_clips")
    ok = record_execution(rt, a, "m1", ExecutionStatus.SUCCESS)
    failed = record_execution(rt, a, "m2", ExecutionStatus.FAIL, dead_lettered=True)
    other = record_execution(rt, b, "m3", ExecutionStatus.FAIL)
    headers = {"X-API-Key": API_KEY}

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/execution-logs?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [e["execution_id"] for e in response.get_json()["items"]]

    assert ids("") == [other.execution_id, failed.execution_id, ok.execution_id]  # newest first
    assert ids("workflow_id=video") == [failed.execution_id, ok.execution_id]
    assert ids(f"trace_id={b.trace_id}") == [other.execution_id]
    assert ids("queued_to_dlq=true") == [failed.execution_id]
    assert ids("status=fail&workflow_id=video&queued_to_dlq=true") == [failed.execution_id]
    assert ids("limit=1") == [other.execution_id]
    first = client.get("/api/execution-logs?limit=2", headers=headers).get_json()
    rest = client.get(
        f"/api/execution-logs?limit=2&cursor={first['next_cursor']}", headers=headers
    ).get_json()
    assert [e["execution_id"] for e in rest["items"]] == [ok.execution_id] and rest["next_cursor"] is None
    assert client.get("/api/execution-logs", headers=auth(rt, "alice")).status_code == 403


# ---- summary ----------------------------------------------------------------------------------------
def test_summary_counts_from_aggregations(rt, client, catalogue):
    succeeded = walk(
        rt,
        make_job(rt, source="done"),
        "downloading",
        "downloaded",
        "processing",
        "processed",
        "publishing",
        "published",
    )
    rt.repo.add_cost(succeeded.job_id, "compute", 1.5)
    rt.repo.add_cost(catalogue["a1"].job_id, "compute", 0.5)
    rt.repo.add_cost(catalogue["b1"].job_id, "compute", 2.0)
    rt.repo.transition(
        catalogue["m1"].job_id,
        Transition(
            "STAGE_90_FAILED",
            actor="dlq-analyzer",
            error=JobError(code="DEAD_LETTERED", message="x", retryable=True),
        ),
    )
    record_execution(rt, succeeded, "d1", ExecutionStatus.SUCCESS)
    record_execution(rt, succeeded, "d2", ExecutionStatus.SUCCESS)
    # a running job whose step should have ended by now: stuck (a1, queued, only waits its turn)
    rt.repo.update_fields(catalogue["a2"].job_id, stuck_at=rt.repo.clock() - timedelta(seconds=5))

    body = client.get("/api/summary", headers={"X-API-Key": API_KEY}).get_json()
    assert (body["queued"], body["active"]) == (1, 1)  # a1; a2
    assert (body["finished24h"], body["failed24h"]) == (3, 2)  # published; b1 and m1 failed
    assert body["failureRate24h"] == pytest.approx(2 / 3)
    assert body["dlqSize"] == 1 and body["staleJobs"] == 1
    assert body["meanDurationMs24h"] is not None and body["meanDurationMs24h"] >= 0
    assert body["cost"]["total"] == pytest.approx(4.0) and body["cost"]["jobs"] == 5

    def cost(query: str, headers: dict[str, str]) -> dict:
        return client.get(f"/api/summary?{query}", headers=headers).get_json()["cost"]

    admin = {"X-API-Key": API_KEY}
    assert cost("accountId=acc-1", admin)["total"] == pytest.approx(2.0)  # a1 + the published one
    assert cost("accountId=acc-2&scenarioId=scn-1", admin)["total"] == pytest.approx(2.0)
    assert cost("scenarioId=scn-1", admin)["jobs"] == 3
    later = (rt.repo.clock() + timedelta(hours=1)).isoformat()
    assert cost(f"createdFrom={later.replace('+00:00', 'Z')}", admin)["jobs"] == 0
    # users see their own jobs' cost only
    bobs = cost("", auth(rt, "bob"))
    assert bobs["userId"] == "bob" and bobs["total"] == pytest.approx(2.0) and bobs["jobs"] == 1


# ---- DLQ listing and audit --------------------------------------------------------------------------
def test_dead_letter_listing_is_owner_scoped_and_counted(rt, client):
    def dead_letter(user: str, source: str) -> Job:
        job = make_job(rt, user=user, source=source)
        return rt.repo.transition(
            job.job_id,
            Transition(
                "failed",
                actor="dlq-analyzer",
                error=JobError(code="DEAD_LETTERED", message="dead", retryable=True),
            ),
        ).job

    alices = [dead_letter("alice", f"d{i}").job_id for i in range(3)]
    bobs = dead_letter("bob", "d9").job_id
    fail(rt, make_job(rt, source="plain"))  # failed, but not dead-lettered
    admin = client.get("/api/dlq?limit=2", headers={"X-API-Key": API_KEY}).get_json()
    assert admin["total"] == 4 and len(admin["jobs"]) == 2 and admin["nextCursor"]
    rest = client.get(
        f"/api/dlq?limit=2&cursor={admin['nextCursor']}", headers={"X-API-Key": API_KEY}
    ).get_json()
    assert {j["jobId"] for j in admin["jobs"] + rest["jobs"]} == {*alices, bobs}
    own = client.get("/api/dlq", headers=auth(rt, "alice")).get_json()
    assert own["total"] == 3 and {j["jobId"] for j in own["jobs"]} == set(alices)
    assert client.get("/api/dlq?userId=bob", headers=auth(rt, "alice")).status_code == 403


def test_audit_lists_control_actions_newest_first_and_users_see_their_own(rt, client):
    job = fail(rt, make_job(rt, user="alice"))
    assert client.post(f"/api/jobs/{job.job_id}/retry", headers=auth(rt, "alice")).status_code == 202
    assert client.delete(f"/api/jobs/{job.job_id}", headers={"X-API-Key": API_KEY}).status_code == 200
    conflict = client.post(f"/api/jobs/{job.job_id}/retry", headers=auth(rt, "alice"))
    assert conflict.status_code == 409

    records = client.get("/api/audit", headers={"X-API-Key": API_KEY}).get_json()["audit"]
    assert [(r["actor"], r["action"], r["result"]) for r in records] == [
        ("user:alice", "job.retry", "error: ILLEGAL_TRANSITION"),
        ("machine:ops-bot", "job.cancel", "ok; cancelled"),
        ("user:alice", "job.retry", "ok; attempt 2"),
    ]
    assert all(r["target"] == job.job_id for r in records)
    alices = client.get("/api/audit", headers=auth(rt, "alice")).get_json()["audit"]
    assert {r["actor"] for r in alices} == {"user:alice"} and len(alices) == 2
    by_action = client.get("/api/audit?action=job.cancel", headers={"X-API-Key": API_KEY}).get_json()["audit"]
    assert [r["actor"] for r in by_action] == ["machine:ops-bot"]


def test_summary_of_an_empty_system_has_no_rates(client):
    body = client.get("/api/summary", headers={"X-API-Key": API_KEY}).get_json()
    assert (body["queued"], body["active"], body["dlqSize"], body["staleJobs"]) == (0, 0, 0, 0)
    assert body["failureRate24h"] is None and body["meanDurationMs24h"] is None
    assert body["cost"] == {**body["cost"], "total": 0.0, "jobs": 0}


def test_500_queued_jobs_behind_a_slow_worker_read_waiting_and_only_a_stuck_one_counts(rt, client):
    queued = [make_job(rt, source=f"q{i}") for i in range(500)]
    # One job the worker took and then never finished its step.
    stuck = walk(rt, make_job(rt, source="hung"), "downloading")
    later = rt.repo.clock() + timedelta(minutes=30)  # the backlog drains slowly; nothing is lost

    def stale_count(at) -> int:
        return int(
            rt.repo.aggregate("jobs", summary_specs(SummaryQuery(), at, None).stale, count=True)["count"]
        )

    assert stale_count(later) == 1
    for job in (queued[0], queued[-1]):
        job = rt.repo.get_job(job.job_id)
        assert liveness_of(job, later) is Liveness.WAITING and not heartbeat_of(job, later).is_stale
    assert liveness_of(rt.repo.get_job(stuck.job_id), later) is Liveness.STUCK
    # The API tells them apart too.
    view = client.get(f"/api/jobs/{queued[0].job_id}", headers=auth(rt, "alice")).get_json()
    assert view["liveness"] == "waiting" and view["stuckAt"] is None
    view = client.get(f"/api/jobs/{stuck.job_id}", headers=auth(rt, "alice")).get_json()
    assert view["liveness"] == "running" and view["stuckAt"] is not None
