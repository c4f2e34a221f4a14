"""The ingest API against the Firestore emulator: a reported job walks its declared stages on the
same state machine as built-in jobs, shows in the API, is timed out by the sweeper, and every kind
of bad input gets its status, error code and message and writes nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from services.api import create_app
from services.auth import hash_api_key, mint_token
from services.runtime import Runtime
from services.settings import Settings
from services.sweeper import sweep_stale_jobs

pytestmark = pytest.mark.emulator

RENDER_KEY = "rk_clip_render_0123456789"
OTHER_KEY = "rk_other_team_0123456789"
RENDER = {"X-Reporter-Key": RENDER_KEY}
OTHER = {"X-Reporter-Key": OTHER_KEY}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    tuned = settings.model_copy(
        update={
            "jwt_secret": SecretStr("emulator-tests-secret-of-enough-length"),
            "ingest_api_key_hashes": {
                hash_api_key(RENDER_KEY): "clip-render",
                hash_api_key(OTHER_KEY): "other-team",
            },
        }
    )
    return Runtime(tuned, clients)


@pytest.fixture
def client(rt):
    return create_app(rt).test_client()


def admin(rt: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, 'ops', 'admin')}"}


def new_job(key: str = "render-1", **overrides: Any) -> dict[str, Any]:
    return {
        "pipeline": "clip_render",
        "idempotencyKey": key,
        "accountId": "acc-1",
        "scenarioId": "scn-7",
        "sourceId": key,
        "userId": "alice",
        "input": {"clipId": key},
        **overrides,
    }


def create(client, key: str = "render-1") -> dict[str, Any]:
    response = client.post(
        "/api/ingest/jobs", json=new_job(key), headers={**RENDER, "traceparent": TRACEPARENT}
    )
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def report(client, job_id: str, headers: dict[str, str] = RENDER, **fields: Any):
    return client.post("/api/ingest/reports", json={"job": {"jobId": job_id}, **fields}, headers=headers)


def events(client, rt, job_id: str) -> list[dict[str, Any]]:
    body = client.get(f"/api/jobs/{job_id}/events", headers=admin(rt)).get_json()
    return list(body.get("events", body.get("items", [])))


def job_doc(client, rt, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/jobs/{job_id}", headers=admin(rt)).get_json()
    return body.get("job", body)


def test_a_reported_job_walks_its_stages_and_shows_in_the_api_like_a_built_in_one(rt, client):
    created = create(client)
    assert created["traceId"] == "acc-1-scn-7-render-1" and created["stage"] == "requested"
    job_id = created["jobId"]
    again = client.post("/api/ingest/jobs", json=new_job(), headers=RENDER)
    assert (
        again.status_code == 200 and again.get_json()["jobId"] == job_id and not again.get_json()["created"]
    )

    for stage in ("rendering", "rendered", "uploading"):
        response = report(client, job_id, type="stage", stage=stage, usage={"compute_seconds": 10})
        assert response.status_code == 200 and response.get_json()["applied"], response.get_json()
    progress = report(client, job_id, type="progress", message="uploading 40%")
    assert progress.status_code == 200
    assert rt.repo.get_job(job_id).progress_text == "uploading 40%"
    done = report(client, job_id, type="succeeded", result={"url": "gs://clips/render-1.mp4"})
    assert done.get_json() == {
        "jobId": job_id, "stage": "delivered", "status": "succeeded", "applied": True, "kind": "succeeded"
    }  # fmt: skip

    job = rt.repo.get_job(job_id)
    assert (
        job.result == {"url": "gs://clips/render-1.mp4"}
        and job.otel_trace_id == "0af7651916cd43dd8448eb211c80319c"
    )
    assert job.cost.total == pytest.approx(30 * rt.settings.cost_per_compute_second)
    timeline = rt.repo.list_events(job_id)
    assert [e.to_stage for e in timeline] == ["requested", "rendering", "rendered", "uploading", "delivered"]
    assert {e.actor for e in timeline} == {"service:clip-render"}
    listed = client.get("/api/jobs?pipeline=clip_render", headers=admin(rt))
    assert listed.status_code == 200 and job_id in str(listed.get_json())
    assert client.get(f"/api/jobs/{job_id}", headers=admin(rt)).status_code == 200


def test_duplicates_are_no_ops_backwards_is_409_and_a_finished_job_takes_only_a_retry(rt, client):
    job_id = create(client)["jobId"]
    assert report(client, job_id, type="stage", stage="rendered").status_code == 200
    duplicate = report(client, job_id, type="stage", stage="rendered")
    assert duplicate.status_code == 200 and duplicate.get_json()["applied"] is False
    backwards = report(client, job_id, type="stage", stage="rendering")
    assert backwards.status_code == 409 and backwards.get_json()["error"] == "ILLEGAL_TRANSITION"
    assert len(rt.repo.list_events(job_id)) == 2

    failed = report(
        client, job_id, type="failed", errorCode="ENCODER_CRASH", message="exit 137", retryable=True
    )
    assert failed.status_code == 200 and failed.get_json()["status"] == "failed"
    job = rt.repo.get_job(job_id)
    assert job.error is not None and (job.error.code, job.error.stage, job.error.retryable) == (
        "ENCODER_CRASH", "rendered", True
    )  # fmt: skip
    assert report(client, job_id, type="failed", errorCode="ENCODER_CRASH").get_json()["applied"] is False
    for late in ({"type": "stage", "stage": "uploading"}, {"type": "heartbeat"}, {"type": "succeeded"}):
        refused = report(client, job_id, **late)
        assert refused.status_code == 409, (late, refused.get_json())
    assert len(rt.repo.list_events(job_id)) == 3

    retried = report(client, job_id, type="retry")
    assert retried.status_code == 200 and retried.get_json()["stage"] == "rendered"
    assert rt.repo.get_job(job_id).attempt == 2
    assert report(client, job_id, type="stage", stage="uploading").status_code == 200


def test_reports_can_name_the_job_by_its_idempotency_key(rt, client):
    job_id = create(client, "by-key")["jobId"]
    response = client.post(
        "/api/ingest/reports",
        json={
            "job": {"pipeline": "clip_render", "idempotencyKey": "by-key"},
            "type": "stage",
            "stage": "rendering",
        },
        headers=RENDER,
    )
    assert response.status_code == 200 and response.get_json()["jobId"] == job_id
    missing = client.post(
        "/api/ingest/reports",
        json={"job": {"pipeline": "clip_render", "idempotencyKey": "never-made"}, "type": "heartbeat"},
        headers=RENDER,
    )
    assert missing.status_code == 404 and missing.get_json()["error"] == "JOB_NOT_FOUND"


def test_heartbeats_keep_a_reported_job_alive_and_silence_lets_the_sweeper_time_it_out(rt, client):
    job_id = create(client)["jobId"]
    report(client, job_id, type="stage", stage="rendering")
    before = rt.repo.get_job(job_id)
    assert report(client, job_id, type="heartbeat").status_code == 200
    after = rt.repo.get_job(job_id)
    assert after.heartbeat_at > before.heartbeat_at and after.stale_at is not None
    assert after.stale_at > before.stale_at  # type: ignore[operator]

    sweep_stale_jobs(rt, now=after.stale_at - timedelta(seconds=1))
    assert rt.repo.get_job(job_id).status == "running"
    report_ = sweep_stale_jobs(rt, now=after.stale_at + timedelta(seconds=1))
    assert report_.by_pipeline == {"clip_render": 1}
    job = rt.repo.get_job(job_id)
    assert job.stage == "timed_out" and job.error is not None and job.error.code == "STALE_HEARTBEAT"
    assert report(client, job_id, type="stage", stage="rendered").status_code == 409


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (new_job(pipeline="no_such_pipeline"), 400, "INVALID_INPUT"),
        (new_job(pipeline="bad name!"), 400, "INVALID_INPUT"),
        (new_job(accountId=""), 400, "INVALID_INPUT"),
        (new_job(surprise=True), 400, "INVALID_INPUT"),
        (new_job(v=2), 400, "INVALID_INPUT"),
        (new_job(input={"a": {"__name__": 1}}), 400, "INVALID_INPUT"),  # Firestore-reserved key
        (new_job(input={"": 1}), 400, "INVALID_INPUT"),
        (new_job(input={"text": "\ud800"}), 400, "INVALID_INPUT"),  # a lone surrogate
        (new_job(input={"deep": json.loads("[" * 40 + "]" * 40)}), 400, "INVALID_INPUT"),
        (new_job(pipeline="video"), 403, "FORBIDDEN"),
    ],
)
def test_bad_creates_are_refused_and_write_nothing(rt, client, body, status, code):
    response = client.post("/api/ingest/jobs", json=body, headers=RENDER)
    assert response.status_code == status and response.get_json()["error"] == code, response.get_json()
    assert response.get_json()["message"]
    assert rt.repo.count_jobs() == 0


def test_another_services_pipeline_is_403_and_writes_nothing(rt, client):
    response = client.post("/api/ingest/jobs", json=new_job(), headers=OTHER)
    assert response.status_code == 403 and "other-team" in response.get_json()["message"]
    assert rt.repo.count_jobs() == 0
    job_id = create(client)["jobId"]
    refused = report(client, job_id, headers=OTHER, type="stage", stage="rendering")
    assert refused.status_code == 403
    assert rt.repo.get_job(job_id).stage == "requested" and len(rt.repo.list_events(job_id)) == 1


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"type": "stage", "stage": "no_such_stage"}, 400, "INVALID_INPUT"),
        ({"type": "stage", "stage": "timed_out"}, 400, "INVALID_INPUT"),
        ({"type": "stage"}, 400, "INVALID_INPUT"),
        ({"type": "failed"}, 400, "INVALID_INPUT"),
        ({"type": "teleport"}, 400, "INVALID_INPUT"),
        ({"type": "heartbeat", "usage": {"compute_seconds": -1}}, 400, "INVALID_INPUT"),
        ({"type": "stage", "stage": "requested"}, 403, "FORBIDDEN"),
    ],
)
def test_bad_reports_are_refused_and_write_nothing(rt, client, fields, status, code):
    job_id = create(client)["jobId"]
    response = report(client, job_id, **fields)
    assert response.status_code == status and response.get_json()["error"] == code, response.get_json()
    assert rt.repo.get_job(job_id).stage == "requested" and len(rt.repo.list_events(job_id)) == 1


def test_a_body_over_64_kb_is_413_and_bad_credentials_are_401(rt, client):
    big = new_job(input={"blob": "x" * (64 * 1024)})
    too_large = client.post("/api/ingest/jobs", json=big, headers=RENDER)
    assert too_large.status_code == 413 and too_large.get_json()["error"] == "PAYLOAD_TOO_LARGE"
    for headers in ({}, {"X-Reporter-Key": "rk_wrong"}, {"Authorization": "Bearer not.a.token"}):
        refused = client.post("/api/ingest/jobs", json=new_job(), headers=headers)
        assert refused.status_code == 401 and refused.get_json()["error"] == "UNAUTHORIZED"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    # A user's JWT is not a reporter's credential.
    assert client.post("/api/ingest/jobs", json=new_job(), headers=admin(rt)).status_code == 401
    assert rt.repo.count_jobs() == 0


def test_the_ingest_endpoints_are_in_the_openapi_document(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/api/ingest/jobs", "/api/ingest/reports"):
        operation = spec["paths"][path]["post"]
        assert operation["security"] == [{"reporterKey": []}, {"googleIdToken": []}]
        assert {"400", "401", "403", "413"} <= set(operation["responses"])
    assert "409" in spec["paths"]["/api/ingest/reports"]["post"]["responses"]
