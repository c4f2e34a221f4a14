"""The alert relay against fake Telegram and Slack servers on loopback (real HTTP).

Payloads are shaped like Cloud Monitoring's webhook notifications (schema 1.2). The relay's
sleeps are recorded instead of slept, so a test asserts exactly how long it waited.
"""

from __future__ import annotations

import copy
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask.testing
import functions_framework
import pytest
from pydantic import SecretStr

import services.alerting.relay as relay_module
from devtools.fakes.chat import FakeChat
from services.alerting.channels import channels_from_settings
from services.alerting.http import create_app
from services.alerting.relay import AlertRelay, InMemoryClaims
from services.settings import Settings

RELAY_TOKEN = "relay-token-0123456789"
CHAT_ID = "-1001234567890"
API = "https://jobtrail.example.com"
REPO_ROOT = Path(__file__).resolve().parents[2]

NOTIFICATION: dict[str, Any] = {
    "version": "1.2",
    "incident": {
        "incident_id": "0.nkm3h6gk9ul2",
        "scoping_project_id": "jobtrail-prod",
        "scoping_project_number": 123456789012,
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/0.nkm3h6gk9ul2?project=jobtrail-prod",
        "started_at": 1767225600,
        "ended_at": None,
        "state": "open",
        "summary": "jobtrail error logs for jt-prod-pipeline-worker is above the threshold of 0 with a value of 3.",
        "apigee_url": "https://apigee.com/...",
        "observed_value": "3.000",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": "jobtrail-prod",
                "service_name": "jt-prod-pipeline-worker",
                "location": "europe-west1",
            },
        },
        "resource_type_display_name": "Cloud Run Revision",
        "resource_id": "",
        "resource_display_name": "jt-prod-pipeline-worker",
        "resource_name": "jobtrail-prod jt-prod-pipeline-worker",
        "metric": {
            "type": "logging.googleapis.com/user/jt-prod-error-logs",
            "displayName": "jt-prod-error-logs",
            "labels": {
                "traceId": "acc1-scn2-src3",
                "jobId": "job_1767225600000_ab12cd34",
                "service": "worker",
            },
        },
        "metadata": {"system_labels": {}, "user_labels": {}},
        "policy_name": "jobtrail (prod): error-severity logs",
        "policy_user_labels": {"runbook": "error-logs"},
        "documentation": {
            "content": "Error-severity log lines.\n\nRunbook: "
            "https://github.com/acme/jobtrail/blob/main/runbooks/error-logs.md",
            "mime_type": "text/markdown",
            "subject": "jobtrail error logs",
        },
        "condition": {
            "name": "projects/jobtrail-prod/alertPolicies/1/conditions/2",
            "displayName": "errors > 0",
        },
        "condition_name": "errors > 0",
        "threshold_value": "0",
    },
}


def notification(**incident: Any) -> dict[str, Any]:
    body = copy.deepcopy(NOTIFICATION)
    body["incident"].update(incident)
    return body


@pytest.fixture(scope="module")
def chat_server() -> Iterator[FakeChat]:
    with FakeChat() as fake:
        yield fake


@pytest.fixture
def chat(chat_server: FakeChat) -> Iterator[FakeChat]:
    chat_server.reset()
    yield chat_server
    chat_server.reset()


@pytest.fixture
def relay_settings(chat: FakeChat) -> Settings:
    return Settings(
        google_cloud_project="jobtrail-test",
        telegram_api_url=chat.telegram_api_url,
        telegram_bot_token=SecretStr(chat.bot_token),
        telegram_chat_id=CHAT_ID,
        slack_webhook_url=SecretStr(chat.slack_webhook_url),
        alert_relay_token=SecretStr(RELAY_TOKEN),
        api_base_url=API,
        external_timeout_seconds=5.0,
        metrics_exporter="none",
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(settings: Settings, sleeps: list[float]) -> flask.testing.FlaskClient:
    relay = AlertRelay(settings, channels_from_settings(settings, sleep=sleeps.append), InMemoryClaims())
    return create_app(relay).test_client()


@pytest.fixture
def client(relay_settings: Settings, sleeps: list[float]) -> flask.testing.FlaskClient:
    return make_client(relay_settings, sleeps)


def post(client: flask.testing.FlaskClient, body: Any, *, token: str | None = RELAY_TOKEN) -> Any:
    query = {"auth_token": token} if token is not None else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/", data=data, query_string=query, content_type="application/json")


def outcomes(response: Any) -> dict[str, str]:
    return {c["channel"]: c["outcome"] for c in response.get_json()["channels"]}


# ---- delivery ----------------------------------------------------------------------------------


def test_an_open_incident_reaches_both_chats_with_value_and_links(client, chat: FakeChat) -> None:
    response = post(client, NOTIFICATION)

    assert response.status_code == 200, response.get_json()
    assert outcomes(response) == {"telegram": "delivered", "slack": "delivered"}
    [telegram] = chat.telegram_messages
    assert telegram["chat_id"] == CHAT_ID
    assert telegram["parse_mode"] == "HTML"
    text = telegram["text"]
    assert "<b>jobtrail (prod): error-severity logs</b>" in text
    assert "<b>State:</b> OPEN" in text
    assert "<b>Value:</b> 3.000 (threshold 0)" in text
    assert "<b>Metric:</b> jt-prod-error-logs" in text
    assert "service_name=jt-prod-pipeline-worker" in text
    assert "<b>Trace id:</b> acc1-scn2-src3" in text
    assert f'<a href="{API}/jobs/job_1767225600000_ab12cd34">Job</a>' in text
    assert f'<a href="{API}/?q=acc1-scn2-src3">Jobs of trace</a>' in text
    # Logs Explorer filtered by the trace label the JSON logger writes.
    assert (
        '<a href="https://console.cloud.google.com/logs/query;query=labels.traceId%3D%22acc1-scn2-src3%22'
        '?project=jobtrail-prod">Logs</a>'
    ) in text
    assert '<a href="https://github.com/acme/jobtrail/blob/main/runbooks/error-logs.md">Runbook</a>' in text
    assert NOTIFICATION["incident"]["url"].replace("&", "&amp;") in text

    [slack] = chat.slack_messages
    assert "*jobtrail (prod): error-severity logs*" in slack["text"]
    assert f"<{API}/jobs/job_1767225600000_ab12cd34|Job>" in slack["text"]
    assert "<https://github.com/acme/jobtrail/blob/main/runbooks/error-logs.md|Runbook>" in slack["text"]


def test_a_bearer_token_is_accepted_too(client, chat: FakeChat) -> None:
    response = client.post(
        "/",
        json=NOTIFICATION,
        headers={"Authorization": f"Bearer {RELAY_TOKEN}"},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert len(chat.telegram_messages) == len(chat.slack_messages) == 1


# ---- authentication and input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({}, {}),
        ({"auth_token": "wrong"}, {}),
        ({"auth_token": RELAY_TOKEN[:-1]}, {}),
        ({"auth_token": RELAY_TOKEN + "x"}, {}),
        ({}, {"Authorization": "Bearer wrong"}),
        ({}, {"Authorization": f"Basic {RELAY_TOKEN}"}),
    ],
)
def test_a_missing_or_wrong_token_is_401_and_nothing_is_sent(
    client, chat: FakeChat, query: dict[str, str], headers: dict[str, str]
) -> None:
    response = client.post(
        "/",
        data=json.dumps(NOTIFICATION),
        query_string=query,
        headers=headers,
        content_type="application/json",
    )

    assert response.status_code == 401
    assert response.get_json()["error"] == "UNAUTHORIZED"
    assert RELAY_TOKEN not in response.get_data(as_text=True)
    assert chat.telegram_requests == chat.slack_requests == 0


def test_a_wrong_token_is_refused_before_the_body_is_read(client, chat: FakeChat) -> None:
    assert post(client, "{not json", token="wrong").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[]",
        json.dumps({"version": "1.2"}),
        json.dumps(notification(state="firing")),
        json.dumps(notification(incident_id="")),
    ],
)
def test_a_body_that_is_not_a_notification_is_400(client, chat: FakeChat, body: str) -> None:
    response = post(client, body)

    assert response.status_code == 400
    assert response.get_json()["error"] == "INVALID_INPUT"
    assert chat.telegram_requests == chat.slack_requests == 0


def test_a_relay_without_any_channel_configured_is_503(chat: FakeChat, sleeps: list[float]) -> None:
    bare = Settings(alert_relay_token=SecretStr(RELAY_TOKEN), metrics_exporter="none")

    response = post(make_client(bare, sleeps), NOTIFICATION)

    assert response.status_code == 503
    assert response.get_json()["error"] == "ALERT_CHANNELS_NOT_CONFIGURED"


# ---- retries -----------------------------------------------------------------------------------


def test_telegram_429_is_retried_after_the_retry_after_it_asked_for(
    client, chat: FakeChat, sleeps: list[float]
) -> None:
    chat.telegram_rate_limited(retry_after=7)

    response = post(client, NOTIFICATION)

    assert response.status_code == 200
    assert outcomes(response)["telegram"] == "delivered"
    assert chat.telegram_requests == 2
    assert len(chat.telegram_messages) == 1
    assert sleeps == [7.0]


def test_a_retry_after_longer_than_the_limit_is_not_waited_for(
    relay_settings: Settings, chat: FakeChat, sleeps: list[float]
) -> None:
    client = make_client(relay_settings.model_copy(update={"alert_retry_after_max_seconds": 30.0}), sleeps)
    chat.telegram_rate_limited(retry_after=120)

    response = post(client, NOTIFICATION)

    assert response.status_code == 502
    [telegram] = [c for c in response.get_json()["channels"] if c["channel"] == "telegram"]
    assert telegram["outcome"] == "failed"
    assert telegram["errorCode"] == "RATE_LIMITED"
    assert chat.telegram_requests == 1
    assert sleeps == []


def test_slack_500_is_retried_with_backoff_then_delivered(
    client, chat: FakeChat, sleeps: list[float]
) -> None:
    chat.slack_fails(500, "internal_error")

    response = post(client, NOTIFICATION)

    assert response.status_code == 200
    assert outcomes(response) == {"telegram": "delivered", "slack": "delivered"}
    assert chat.slack_requests == 2
    assert len(chat.slack_messages) == 1
    [waited] = sleeps
    assert 0 < waited <= Settings().alert_backoff_max_seconds


def test_slack_429_waits_for_its_retry_after_header(client, chat: FakeChat, sleeps: list[float]) -> None:
    chat.slack_fails(429, "rate_limited", retry_after=4)

    assert post(client, NOTIFICATION).status_code == 200
    assert sleeps == [4.0]
    assert len(chat.slack_messages) == 1


def test_retries_stop_after_max_attempts(
    relay_settings: Settings, chat: FakeChat, sleeps: list[float]
) -> None:
    client = make_client(relay_settings.model_copy(update={"alert_max_attempts": 3}), sleeps)
    for _ in range(3):
        chat.slack_fails(503, "service_unavailable")

    response = post(client, NOTIFICATION)

    assert response.status_code == 502
    body = response.get_json()
    assert body["error"] == "ALERT_DELIVERY_FAILED"
    assert outcomes(response) == {"telegram": "delivered", "slack": "failed"}
    assert chat.slack_requests == 3
    assert len(sleeps) == 2
    # The backoff grows between attempts (jitter is added on top, never subtracted).
    assert sleeps[1] >= Settings().alert_backoff_initial_seconds * 2


def test_a_rejected_message_is_not_retried(client, chat: FakeChat, sleeps: list[float]) -> None:
    chat.telegram_fails(400, "Bad Request: chat not found")

    response = post(client, NOTIFICATION)

    assert response.status_code == 502
    [telegram] = [c for c in response.get_json()["channels"] if c["channel"] == "telegram"]
    assert telegram == {
        "channel": "telegram",
        "outcome": "failed",
        "errorCode": "REJECTED",
        "error": "telegram: HTTP 400 (Bad Request: chat not found)",
    }
    assert chat.telegram_requests == 1
    assert sleeps == []


# ---- deduplication -----------------------------------------------------------------------------


def test_a_repeated_notification_is_delivered_once(client, chat: FakeChat) -> None:
    first = post(client, NOTIFICATION)
    second = post(client, NOTIFICATION)

    assert first.status_code == second.status_code == 200
    assert outcomes(second) == {"telegram": "duplicate", "slack": "duplicate"}
    assert len(chat.telegram_messages) == len(chat.slack_messages) == 1
    assert chat.telegram_requests == chat.slack_requests == 1


def test_the_closing_of_an_incident_is_a_new_notification(client, chat: FakeChat) -> None:
    post(client, NOTIFICATION)

    closed = post(client, notification(state="closed", ended_at=1767226200))

    assert outcomes(closed) == {"telegram": "delivered", "slack": "delivered"}
    assert "<b>State:</b> CLOSED" in chat.telegram_messages[1]["text"]
    assert "<b>Ended:</b> 2026-01-01 00:10:00 UTC" in chat.telegram_messages[1]["text"]


def test_a_failed_channel_is_retried_by_the_next_notification_and_only_that_channel(
    client, chat: FakeChat
) -> None:
    chat.telegram_fails(400, "Bad Request: chat not found")
    assert post(client, NOTIFICATION).status_code == 502

    again = post(client, NOTIFICATION)

    assert again.status_code == 200
    assert outcomes(again) == {"telegram": "delivered", "slack": "duplicate"}
    assert len(chat.telegram_messages) == len(chat.slack_messages) == 1


# ---- secrets -----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_bot_token_never_reaches_a_log_line_or_a_response(
    relay_settings: Settings, chat: FakeChat, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs request paths (the bot token is one) at DEBUG
    # One Telegram failure echoes the token in its description; the other is a refused connection,
    # whose requests error message carries the whole URL.
    chat.telegram_fails(400, f"Bad Request: bot{chat.bot_token} cannot write to this chat")
    echoed = post(make_client(relay_settings, sleeps), NOTIFICATION)
    unreachable = relay_settings.model_copy(update={"telegram_api_url": f"http://127.0.0.1:{_closed_port()}"})
    refused = post(make_client(unreachable, sleeps), notification(incident_id="0.other"))

    assert echoed.status_code == refused.status_code == 502
    [refused_telegram] = [c for c in refused.get_json()["channels"] if c["channel"] == "telegram"]
    assert refused_telegram["errorCode"] == "CONNECTION_FAILED"
    secrets = (chat.bot_token, chat.slack_path)
    for text in (echoed.get_data(as_text=True), refused.get_data(as_text=True), caplog.text):
        for secret in secrets:
            assert secret not in text
    assert any("urllib3" in r.name for r in caplog.records), "the DEBUG lines this test guards against"
    assert "[REDACTED]" in caplog.text


# ---- the deployed entry point ------------------------------------------------------------------


def test_the_functions_framework_target_relays(
    relay_settings: Settings, chat: FakeChat, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = AlertRelay(
        relay_settings, channels_from_settings(relay_settings, sleep=sleeps.append), InMemoryClaims()
    )
    monkeypatch.setattr(relay_module, "_relay", relay)
    app = functions_framework.create_app(
        target="alert_relay", source=str(REPO_ROOT / "functions/alert_relay.py")
    )

    response = app.test_client().post("/", json=NOTIFICATION, query_string={"auth_token": RELAY_TOKEN})

    assert response.status_code == 200
    assert len(chat.telegram_messages) == len(chat.slack_messages) == 1
