"""Music Clips' HTTP refusals, answered before any store is touched (no network, no emulator)."""

from __future__ import annotations

import flask
import pytest
from pydantic import SecretStr

from services.clients import Clients
from services.music_clips.api import music_clips_blueprint
from services.runtime import Runtime
from services.settings import Settings

TOKEN = "callback-token-under-test"


@pytest.fixture
def client() -> flask.testing.FlaskClient:
    settings = Settings(suno_callback_token=SecretStr(TOKEN), public_base_url="https://api.example.com")
    app = flask.Flask("music-unit")
    app.register_blueprint(music_clips_blueprint, runtime=Runtime(settings, Clients(settings)))
    return app.test_client()


CALLBACK = {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": "t-1", "data": []}}


@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong", f"?token={TOKEN}x", f"?other={TOKEN}"])
def test_callback_without_the_right_token_is_401(client, query):
    response = client.post(f"/api/webhooks/suno/music{query}", json=CALLBACK)
    assert response.status_code == 401
    assert response.json["error"] == "UNAUTHORIZED" and TOKEN not in response.get_data(as_text=True)


def test_run_once_without_a_user_is_401_with_a_request_id(client):
    response = client.post("/api/music-clips/channels/channel_xyz/runOnce", json={})
    assert response.status_code == 401
    assert response.json["requestId"].startswith("req_")
    assert response.headers["X-Request-Id"] == response.json["requestId"]


def test_run_once_with_a_broken_body_is_400(client):
    response = client.post(
        "/api/music-clips/channels/channel_xyz/runOnce",
        data=b"{not json",
        headers={"x-user-id": "user-1", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json["error"] == "INVALID_INPUT"


def test_run_once_refuses_an_oversized_body(client):
    response = client.post(
        "/api/music-clips/channels/channel_xyz/runOnce",
        data=b"x" * (64 * 1024 + 1),
        headers={"x-user-id": "user-1"},
    )
    assert response.status_code == 413 and response.json["error"] == "PAYLOAD_TOO_LARGE"


def test_job_ids_that_cannot_exist_are_404_in_the_seed_shape(client):
    response = client.get("/api/music-clips/jobs/bad$id")
    assert response.status_code == 404
    body = response.json
    assert body == {
        "success": False,
        "ok": False,
        "error": "JOB_NOT_FOUND",
        "message": "Job bad$id not found",
        "requestId": body["requestId"],
    }
