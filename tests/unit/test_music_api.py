"""Music Clips' HTTP refusals in the API app, answered before any store is touched (no network, no
emulator): credentials, who a run may be for, bodies, job ids, and Suno's callback token."""

from __future__ import annotations

import flask
import pytest
from pydantic import SecretStr

from services.api import create_app
from services.auth import mint_token
from services.clients import Clients
from services.runtime import Runtime
from services.settings import Settings

TOKEN = "callback-token-under-test"
RUN_ONCE = "/api/music-clips/channels/channel_xyz/runOnce"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        suno_callback_token=SecretStr(TOKEN),
        public_base_url="https://api.example.com",
        jwt_secret=SecretStr("music-unit-tests-secret-of-enough-length"),
        metrics_exporter="none",
    )


@pytest.fixture
def client(settings) -> flask.testing.FlaskClient:
    return create_app(Runtime(settings, Clients(settings))).test_client()


def bearer(settings: Settings, sub: str = "user-1", role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, sub, role)}"}


def assert_request_id(response) -> None:
    assert response.json["requestId"].startswith("req_")
    assert response.headers["X-Request-Id"] == response.json["requestId"]


CALLBACK = {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": "t-1", "data": []}}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=",
        "?token=wrong",
        f"?token={TOKEN}x",
        f"?other={TOKEN}",
        # The secret itself no longer opens anything: only its HMAC for one job attempt does.
        f"?token={TOKEN}",
        f"?jobId=job_1703616000000_abc123&attempt=1&token={TOKEN}",
    ],
)
def test_callback_without_the_right_token_is_401(client, query):
    response = client.post(f"/api/webhooks/suno/music{query}", json=CALLBACK)
    assert response.status_code == 401
    assert response.json["error"] == "UNAUTHORIZED" and TOKEN not in response.get_data(as_text=True)


def test_callback_ignores_api_credentials(client, settings):
    # Suno's route has its own token; an API token does not stand in for it.
    response = client.post("/api/webhooks/suno/music", json=CALLBACK, headers=bearer(settings, role="admin"))
    assert response.status_code == 401 and response.json["error"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    ("method", "path"), [("POST", RUN_ONCE), ("GET", "/api/music-clips/jobs/job_1703616000000_abc123")]
)
def test_without_credentials_music_routes_are_401_with_a_request_id(client, method, path):
    response = client.open(path, method=method, json={"userId": "user-1"})
    assert response.status_code == 401
    assert response.json["error"] == "UNAUTHORIZED" and response.json["success"] is False
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_request_id(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-user-id": "user-1"},  # the old way of saying who you are: not a credential
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlci0xOnB3"},
        {"X-API-Key": "jt_not_a_configured_key"},
    ],
)
def test_run_once_with_anything_but_valid_credentials_is_401(client, headers):
    response = client.post(RUN_ONCE, json={"userId": "user-1"}, headers=headers)
    assert response.status_code == 401 and response.json["error"] == "UNAUTHORIZED"
    assert_request_id(response)


def test_a_token_signed_with_another_secret_is_401(client, settings):
    forged = settings.model_copy(update={"jwt_secret": SecretStr("someone-elses-secret-of-enough-length")})
    response = client.post(RUN_ONCE, json={}, headers=bearer(forged, role="admin"))
    assert response.status_code == 401 and response.json["error"] == "UNAUTHORIZED"


def test_a_user_cannot_start_a_run_for_another_user(client, settings):
    response = client.post(RUN_ONCE, json={"userId": "user-2"}, headers=bearer(settings, "user-1"))
    assert response.status_code == 403
    assert response.json["error"] == "FORBIDDEN" and response.json["success"] is False
    assert_request_id(response)


def test_run_once_with_a_broken_body_is_400(client, settings):
    response = client.post(
        RUN_ONCE, data=b"{not json", headers={**bearer(settings), "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json["error"] == "INVALID_INPUT"
    assert_request_id(response)


def test_run_once_refuses_an_oversized_body(client, settings):
    response = client.post(RUN_ONCE, data=b"x" * (64 * 1024 + 1), headers=bearer(settings))
    assert response.status_code == 413 and response.json["error"] == "PAYLOAD_TOO_LARGE"


def test_credentials_are_checked_before_the_body(client):
    response = client.post(RUN_ONCE, data=b"x" * (64 * 1024 + 1))
    assert response.status_code == 401


def test_job_ids_that_cannot_exist_are_404_in_the_seed_shape(client, settings):
    response = client.get("/api/music-clips/jobs/bad$id", headers=bearer(settings))
    assert response.status_code == 404
    body = response.json
    assert body == {
        "success": False,
        "ok": False,
        "error": "JOB_NOT_FOUND",
        "message": "Job bad$id not found",
        "requestId": body["requestId"],
    }
