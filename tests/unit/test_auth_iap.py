"""Identity-Aware Proxy sign-in: the signed header IAP adds, verified against the keys IAP
publishes (served here on loopback as Google serves them), through the real API app. Forged
assertions of every kind answer 401; bearer JWTs and API keys keep working beside IAP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import flask
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from devtools.local.serve import BackgroundServer
from services.api import create_app
from services.auth import check_auth_settings, hash_api_key, mint_token
from services.auth.iap import IAP_HEADER, IAP_ISSUER
from services.clients import Clients
from services.runtime import Runtime
from services.settings import Settings

AUDIENCE = "/projects/123456789/locations/europe-west1/services/jobtrail-api"
KID = "iap-key-1"
API_KEY = "jt_iap_unit_0123456789"
# Answered after sign-in without touching any store: a malformed job id is a 404 for anyone
# signed in; pausing a queue that does not exist is 404 for an admin and 403 for a user.
SIGNED_IN_PROBE = "/api/jobs/%20"
ADMIN_PROBE = "/api/admin/queues/no-such-queue/pause"

IAP_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def iap_keys_url() -> Iterator[str]:
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(IAP_KEY.public_key(), as_dict=True)
    keys = flask.Flask("iap_keys")
    keys.add_url_rule("/public_key-jwk", "jwk", lambda: {"keys": [{**jwk, "kid": KID, "alg": "ES256"}]})
    with BackgroundServer(keys) as server:
        yield f"{server.url}/public_key-jwk"


@pytest.fixture
def settings(iap_keys_url: str) -> Settings:
    return Settings(
        iap_audience=AUDIENCE,
        iap_jwks_url=iap_keys_url,
        iap_admin_emails=["Ops@Example.com"],
        jwt_secret=SecretStr("iap-unit-tests-secret-of-enough-length-0"),
        api_key_hashes={hash_api_key(API_KEY): "ops-bot"},
        metrics_exporter="none",
    )


@pytest.fixture
def client(settings: Settings) -> flask.testing.FlaskClient:
    return create_app(Runtime(settings, Clients(settings))).test_client()


def assertion(
    email: str = "alice@example.com",
    *,
    key: Any = IAP_KEY,
    kid: str = KID,
    algorithm: str = "ES256",
    audience: str = AUDIENCE,
    issuer: str = IAP_ISSUER,
    expires_in: int = 600,
    drop: str | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": issuer,
        "sub": "accounts.google.com:1234567890",
        "email": email,
        "iat": now,
        "exp": now + expires_in,
    }
    claims.pop(drop or "", None)
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def iap(token: str) -> dict[str, str]:
    return {IAP_HEADER: token}


def test_a_valid_assertion_signs_in_a_user_and_a_listed_email_as_admin(client):
    assert client.get(SIGNED_IN_PROBE, headers=iap(assertion())).status_code == 404
    me = client.get("/api/auth/me", headers=iap(assertion("Ops@Example.com")))
    assert me.status_code == 200 and (me.json["subject"], me.json["role"]) == ("ops@example.com", "admin")
    as_user = client.post(ADMIN_PROBE, headers=iap(assertion("alice@example.com")))
    assert as_user.status_code == 403 and as_user.json["error"] == "FORBIDDEN"
    as_admin = client.post(ADMIN_PROBE, headers=iap(assertion("ops@example.com")))
    assert as_admin.status_code == 404 and as_admin.json["error"] == "QUEUE_NOT_FOUND"


FORGED = {
    "wrong key": lambda: assertion(key=OTHER_KEY),
    "unknown key id": lambda: assertion(key=OTHER_KEY, kid="attacker-key"),
    "wrong audience": lambda: assertion(audience="/projects/999/global/backendServices/42"),
    "wrong issuer": lambda: assertion(issuer="https://evil.example"),
    "alg none": lambda: jwt.encode(
        {"aud": AUDIENCE, "iss": IAP_ISSUER, "sub": "x", "email": "ops@example.com", "exp": 2**31},
        None,
        algorithm="none",
    ),
    "HS256 with a guessable secret": lambda: assertion(key="x" * 32, algorithm="HS256"),
    "expired": lambda: assertion(expires_in=-120),
    "no email": lambda: assertion(drop="email"),
    "not a JWT": lambda: "not-a-jwt",
    "empty": lambda: "",
}


@pytest.mark.parametrize("case", FORGED)
def test_forged_assertions_are_401(client, case):
    response = client.post(ADMIN_PROBE, headers=iap(FORGED[case]()))
    assert response.status_code == 401, response.json
    assert response.json["error"] == "UNAUTHORIZED"


def test_missing_assertion_and_no_other_credentials_is_401(client):
    response = client.get(SIGNED_IN_PROBE)
    assert response.status_code == 401 and "IAP" in response.json["message"]


def test_bearer_tokens_and_api_keys_keep_working_beside_iap(client, settings):
    token = mint_token(settings, "ci-bot", "admin")
    assert client.post(ADMIN_PROBE, headers={"Authorization": f"Bearer {token}"}).status_code == 404
    assert client.post(ADMIN_PROBE, headers={"X-API-Key": API_KEY}).status_code == 404
    # A bad bearer token is not rescued by an IAP header: the credentials sent are the ones judged.
    forged = {"Authorization": "Bearer nope", **iap(assertion("ops@example.com"))}
    assert client.post(ADMIN_PROBE, headers=forged).status_code == 401


def test_without_iap_configured_the_header_signs_nobody_in(settings):
    plain = settings.model_copy(update={"iap_audience": None})
    client = create_app(Runtime(plain, Clients(plain))).test_client()
    assert client.get(SIGNED_IN_PROBE, headers=iap(assertion())).status_code == 401


def test_iap_alone_is_a_configuration_that_can_verify_someone():
    check_auth_settings(Settings(jwt_secret=None, iap_audience=AUDIENCE))
    with pytest.raises(ValueError, match="IAP_AUDIENCE"):
        check_auth_settings(Settings(jwt_secret=None))
