"""The API app without a database: routing, the OpenAPI document, auth and input errors.

Every request here is refused (or answered) before the repository is touched, so the runtime's
lazy clients never connect to anything.
"""

from __future__ import annotations

import re

import flask
import pytest
from pydantic import SecretStr

from services.api import create_app
from services.api.app import RUNTIME_BLUEPRINTS
from services.api.openapi import operations, spec_of
from services.auth import hash_api_key, mint_token
from services.clients import Clients
from services.runtime import Runtime
from services.settings import Settings

API_KEY = "jt_unit_key_0123456789"
# Blueprints of other modules that publish no operations (their routes are theirs to document).
FOREIGN_BLUEPRINTS = {blueprint.name for blueprint in RUNTIME_BLUEPRINTS}


@pytest.fixture
def settings() -> Settings:
    return Settings(api_key_hashes={hash_api_key(API_KEY): "ops-bot"}, metrics_exporter="none")


@pytest.fixture
def app(settings) -> flask.Flask:
    return create_app(Runtime(settings, Clients(settings)))


@pytest.fixture
def client(app):
    return app.test_client()


def user(settings: Settings, sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, sub)}"}


def concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", "video-worker", path) if "queues" in path else re.sub(r"{[^}]+}", "job_1", path)


def test_every_route_is_in_the_spec_and_every_spec_operation_is_a_route(app):
    spec = spec_of(app)
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    routed = set()
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".", 1)[0] if "." in rule.endpoint else None
        if blueprint in FOREIGN_BLUEPRINTS:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", rule.rule)
        routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented
    assert len(documented) == len(operations(app))  # no two operations share a path and method


def test_spec_is_served_without_credentials_and_is_openapi_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"] == "3.1.0" and "/api/jobs/{jobId}" in spec["paths"]
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "apiKey", "token"}
    assert {"/api/music-clips/channels/{channelId}/runOnce", "/api/music-clips/jobs/{jobId}"} <= set(
        spec["paths"]
    )
    assert spec["paths"]["/api/webhooks/suno/music"]["post"]["security"] == [{"token": []}]


def test_every_referenced_schema_exists(app):
    spec = spec_of(app)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', __import__("json").dumps(spec)))
    assert refs and refs <= set(spec["components"]["schemas"])


def test_every_authenticated_operation_answers_401_without_credentials(app, client):
    for op in operations(app):
        if not op.authenticated:
            continue
        response = client.open(concrete(op.path), method=op.method, json={} if op.body else None)
        assert response.status_code == 401, (op.method, op.path, response.get_json())
        body = response.get_json()
        # Music Clips' routes (seed 002) also name the request in every answer.
        body.pop("requestId", None)
        assert body == {"success": False, "ok": False, "error": "UNAUTHORIZED", "message": body["message"]}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_token_is_401_not_a_leak_of_the_token(settings, client):
    token = mint_token(settings.model_copy(update={"jwt_secret": SecretStr("x" * 40)}), "alice")
    response = client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and token not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/api/admin/queues", None),
        ("POST", "/api/admin/queues/video-worker/pause", None),
        ("POST", "/api/admin/queues/video-worker/resume", None),
        ("GET", "/api/execution-logs", None),
        ("POST", "/api/dlq/replay", {"filter": {}}),
    ],
)
def test_admin_operations_are_403_for_users(settings, client, method, path, body):
    response = client.open(path, method=method, json=body, headers=user(settings))
    assert response.status_code == 403 and response.get_json()["error"] == "FORBIDDEN"


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=ten",
        "sort=name",
        "status=stuck",
        "createdFrom=2024-01-01T00:00:00",
        "createdTo=yesterday",
        "cursor=%21%21",
    ],
)
def test_bad_listing_parameters_are_400(settings, client, query):
    response = client.get(f"/api/jobs?{query}", headers=user(settings))
    assert response.status_code == 400 and response.get_json()["error"] == "INVALID_INPUT"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"jobId": ""}',
        b'{"executionId": "e", "jobId": "j"}',
        b'{"filter": {}, "limit": 0}',
        b'{"filter": {}, "surprise": 1}',
        b"",
    ],
)
def test_bad_replay_bodies_are_400(client, body):
    response = client.post(
        "/api/dlq/replay", data=body, headers={"X-API-Key": API_KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.get_json()["error"] == "INVALID_INPUT"


def test_oversized_body_is_413(client):
    response = client.post(
        "/api/dlq/replay",
        data=b"{" + b" " * (64 * 1024) + b"}",
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.get_json()["error"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("job_id", ["..", "__x__", "a" * 200, "bad id", "-leading-dash"])
def test_malformed_job_ids_are_the_same_404_as_missing_jobs(settings, client, job_id):
    response = client.get(f"/api/jobs/{job_id}", headers=user(settings))
    assert response.status_code == 404 and response.get_json()["error"] == "JOB_NOT_FOUND"


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"] == "NOT_FOUND"
    wrong = client.put("/api/jobs")
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "METHOD_NOT_ALLOWED"
    assert "GET" in wrong.headers["Allow"]


def test_unknown_queue_is_404_for_admins(client):
    response = client.post("/api/admin/queues/no-such-queue/pause", headers={"X-API-Key": API_KEY})
    assert response.status_code == 404 and response.get_json()["error"] == "QUEUE_NOT_FOUND"


def test_app_refuses_to_start_with_a_short_jwt_secret():
    settings = Settings(jwt_secret=SecretStr("too-short"))
    with pytest.raises(ValueError, match="32 bytes"):
        create_app(Runtime(settings, Clients(settings)))


def test_the_functions_framework_target_serves_the_app():
    """functions/api.py: the ``api`` target dispatches every path into the app built on first use."""
    import functions_framework

    from functions import api as entry

    target = functions_framework.create_app(target="api", source=entry.__file__).test_client()
    spec = target.get("/openapi.json")
    assert spec.status_code == 200 and spec.get_json()["openapi"] == "3.1.0"
    refused = target.get("/api/jobs")
    assert refused.status_code == 401 and refused.get_json()["error"] == "UNAUTHORIZED"
    assert target.delete("/api/jobs/x").status_code == 401
    # Paths the framework's own routing cannot match answer our JSON body, not Flask's HTML page.
    for unroutable in ("/api/jobs/a%0Ab", "/api/jobs/%0A/events", "/favicon.ico"):
        missing = target.get(unroutable)
        assert missing.status_code == 404 and missing.is_json, unroutable
        assert missing.get_json()["error"] == "NOT_FOUND"


def test_with_the_prometheus_exporter_the_api_answers_scrapes(settings):
    """Like every other entry point: Music Clips jobs start here, so jobs_started_total is here."""
    from services.telemetry import Telemetry, get_metrics

    scraped = settings.model_copy(update={"metrics_exporter": "prometheus"})
    telemetry = Telemetry.create(scraped)
    with telemetry.activated():
        get_metrics().job_started("music_clips")
        response = create_app(Runtime(scraped, Clients(scraped))).test_client().get("/metrics")
    telemetry.shutdown()
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert 'jobs_started_total{pipeline="music_clips"} 1.0' in response.get_data(as_text=True)
    assert create_app(Runtime(settings, Clients(settings))).test_client().get("/metrics").status_code == 404
