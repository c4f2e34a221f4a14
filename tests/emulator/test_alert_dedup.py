"""Alert notification claims in the Firestore emulator: one delivery across relay instances."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr

from devtools.fakes.chat import FakeChat
from services.alerting.channels import channels_from_settings
from services.alerting.http import create_app
from services.alerting.relay import AlertRelay, RepositoryClaims
from services.jobs.repository import JobRepository
from services.settings import Settings

pytestmark = pytest.mark.emulator


@pytest.fixture
def alerts_repo(repo: JobRepository) -> Iterator[JobRepository]:
    yield repo
    repo.db.recursive_delete(repo.collection("alerts"))


def test_a_claim_is_won_once_until_released(alerts_repo: JobRepository) -> None:
    assert alerts_repo.claim_alert("0.abc:open:telegram") is True
    assert alerts_repo.claim_alert("0.abc:open:telegram") is False
    assert alerts_repo.claim_alert("0.abc:open:slack") is True

    alerts_repo.release_alert("0.abc:open:telegram")

    assert alerts_repo.claim_alert("0.abc:open:telegram") is True
    stored = alerts_repo.alert_ref("0.abc:open:telegram").get().to_dict()
    assert stored["key"] == "0.abc:open:telegram"
    assert stored["expireAt"] > stored["claimedAt"]


def test_concurrent_claims_of_one_key_have_exactly_one_winner(alerts_repo: JobRepository) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: alerts_repo.claim_alert("0.race:open:slack"), range(8)))

    assert results.count(True) == 1


def test_two_relay_instances_deliver_one_notification_once(
    alerts_repo: JobRepository, settings: Settings
) -> None:
    body = {
        "version": "1.2",
        "incident": {
            "incident_id": "0.twice",
            "state": "open",
            "policy_name": "jobtrail (test): stale jobs found",
            "observed_value": "2",
            "threshold_value": "0",
        },
    }
    with FakeChat() as chat:
        relay_settings = settings.model_copy(
            update={
                "telegram_api_url": chat.telegram_api_url,
                "telegram_bot_token": SecretStr(chat.bot_token),
                "telegram_chat_id": "42",
                "slack_webhook_url": SecretStr(chat.slack_webhook_url),
                "alert_relay_token": SecretStr("relay-token"),
            }
        )
        instances = [
            create_app(
                AlertRelay(
                    relay_settings,
                    channels_from_settings(relay_settings, sleep=lambda _: None),
                    RepositoryClaims(lambda: alerts_repo),
                )
            ).test_client()
            for _ in range(2)
        ]

        with ThreadPoolExecutor(max_workers=2) as pool:
            responses = list(
                pool.map(
                    lambda client: client.post(
                        "/",
                        data=json.dumps(body),
                        query_string={"auth_token": "relay-token"},
                        content_type="application/json",
                    ),
                    instances,
                )
            )

        assert [r.status_code for r in responses] == [200, 200]
        assert len(chat.telegram_messages) == len(chat.slack_messages) == 1
        outcomes = sorted(c["outcome"] for r in responses for c in r.get_json()["channels"])
        assert outcomes == ["delivered", "delivered", "duplicate", "duplicate"]
