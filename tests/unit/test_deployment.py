"""The deployment contract's rules (services/deployment.py) and their agreement with the catalogue
Terraform deploys from (terraform/entrypoints.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from services.deployment import CHANNEL_NEEDS, NEEDS, Need, problem_of, problems, require_deployment
from services.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = yaml.safe_load((REPO / "terraform" / "entrypoints.yaml").read_text())
OUTSIDE_SETTING = {
    "suno": "suno_api_url",
    "video_source": "video_source_url",
    "processor": "processor_url",
    "instagram": "instagram_url",
}

URL = Need("suno_api_url", "url", "Terraform variable outside_urls.suno")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://api.sunoapi.org", None),
        ("https://10.1.2.3/api", None),  # a private address can be a real service (VPC)
        ("http://api.sunoapi.org", "is not an https URL"),
        ("https://127.0.0.1:8090/suno", "points at loopback"),
        ("https://localhost/suno", "points at loopback"),
        ("https://[::1]/suno", "points at loopback"),
        ("https://0.0.0.0/suno", "points at loopback"),
        ("https:///suno", "has no host"),
        ("", "is not set"),
    ],
)
def test_outside_urls_must_be_https_on_a_real_host(url: str, problem: str | None) -> None:
    assert problem_of(Settings(suno_api_url=url), URL) == problem


def test_a_secret_is_refused_unset_or_at_its_development_default_and_never_quoted() -> None:
    need = Need("webhook_hmac_secret", "secret", "Terraform")
    assert problem_of(Settings(), need) == "holds the development default"
    assert problem_of(Settings(webhook_hmac_secret=SecretStr(" ")), need) == "is not set"
    assert problem_of(Settings(webhook_hmac_secret=SecretStr("a-real-generated-value")), need) is None
    found = problems(Settings(environment="cloud"), "webhook_intake")
    assert not any("dev-webhook-secret" in line for line in found)


def test_given_values_must_come_from_the_environment_even_when_the_default_looks_right() -> None:
    need = Need("region", "given", "Terraform")
    assert problem_of(Settings(), need) == "is not set"
    assert problem_of(Settings(region="europe-west1"), need) is None


def test_local_and_test_runs_are_not_checked_but_the_cloud_is() -> None:
    require_deployment("api", Settings(environment="local"))
    require_deployment("api", Settings(environment="test"))
    with pytest.raises(SystemExit) as refused:
        require_deployment("api", Settings(environment="cloud"))
    message = str(refused.value)
    assert message.startswith("api refuses to start in the cloud")
    for variable in ("JWT_SECRET", "SUNO_API_URL", "SUNO_API_KEY", "GOOGLE_CLOUD_PROJECT"):
        assert f"- {variable} " in message


def test_k_service_means_cloud_unless_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_SERVICE", "jt-dev-api")
    assert Settings().environment == "cloud"
    monkeypatch.setenv("ENVIRONMENT", "test")
    assert Settings().environment == "test"


def test_a_configured_chat_channel_needs_its_secrets() -> None:
    base = Settings(environment="cloud", alert_channels=["telegram", "slack"])
    found = "\n".join(problems(base, "alert_relay"))
    assert "TELEGRAM_BOT_TOKEN is not set" in found
    assert "TELEGRAM_CHAT_ID is not set" in found
    assert "SLACK_WEBHOOK_URL is not set" in found
    quiet = "\n".join(problems(Settings(environment="cloud", alert_channels=[]), "alert_relay"))
    assert "TELEGRAM" not in quiet and "SLACK" not in quiet


def test_every_catalogue_entry_point_has_a_contract_and_the_same_secrets() -> None:
    assert sorted(CATALOGUE) == sorted(NEEDS)
    for name, service in CATALOGUE.items():
        secret_needs = sorted(n.variable for n in NEEDS[name] if n.kind == "secret")
        assert sorted(service.get("secrets", [])) == secret_needs, name
    channel_secrets = sorted(
        n.variable for needs in CHANNEL_NEEDS.values() for n in needs if n.kind == "secret"
    )
    assert sorted(CATALOGUE["alert_relay"]["optional_secrets"]) == channel_secrets


def test_each_service_is_given_exactly_the_outside_urls_its_contract_needs() -> None:
    for name, service in CATALOGUE.items():
        given = sorted(OUTSIDE_SETTING[o] for o in service.get("outside", []))
        needed = sorted(n.field for n in NEEDS[name] if n.field in OUTSIDE_SETTING.values())
        assert given == needed, name
