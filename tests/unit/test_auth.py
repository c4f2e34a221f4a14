"""Credentials -> principal: HS256 and JWKS (RS256) tokens, API keys, and every way they fail."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import flask
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from devtools.local.serve import BackgroundServer
from services.auth import (
    Principal,
    PrincipalKind,
    Role,
    authenticate,
    check_auth_settings,
    hash_api_key,
    mint_token,
    visible,
)
from services.errors import Forbidden, JobNotFound, Unauthorized
from services.settings import Settings

SECRET = "unit-test-secret-that-is-long-enough-000"
API_KEY = "jt_live_0123456789abcdef"


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret=SecretStr(SECRET), api_key_hashes={hash_api_key(API_KEY): "ops-bot"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256(claims: dict[str, object], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def test_minted_token_names_a_user_and_admin_role_is_read_from_the_claim(settings):
    user = authenticate(settings, bearer(mint_token(settings, "alice")))
    admin = authenticate(settings, bearer(mint_token(settings, "root", Role.ADMIN)))
    assert user == Principal("alice", Role.USER, PrincipalKind.USER) and not user.is_admin
    assert admin.is_admin and admin.actor == "user:root"


def test_unknown_role_is_a_plain_user(settings):
    token = hs256({"sub": "mallory", "role": "superadmin", "exp": int(time.time()) + 60})
    assert authenticate(settings, bearer(token)).role is Role.USER


@pytest.mark.parametrize(
    "claims,expires_in,problem",
    [
        ({"sub": "a"}, -3600, "expired"),
        ({"sub": "a"}, None, "MissingRequiredClaimError"),
        ({}, 60, "MissingRequiredClaimError"),
        ({"sub": ""}, 60, "sub claim"),
    ],
)
def test_tokens_without_the_required_claims_are_refused(settings, claims, expires_in, problem):
    # exp is computed when the test runs, not when it is collected: a long session must not
    # turn "valid for a minute" into "expired".
    if expires_in is not None:
        claims = {**claims, "exp": int(time.time()) + expires_in}
    with pytest.raises(Unauthorized, match=problem):
        authenticate(settings, bearer(hs256(claims)))


def test_token_signed_with_another_secret_is_refused_and_never_echoed(settings):
    token = hs256({"sub": "a", "exp": int(time.time()) + 60}, secret="another-secret-of-sufficient-length-xx")
    with pytest.raises(Unauthorized) as caught:
        authenticate(settings, bearer(token))
    assert token not in caught.value.message and "InvalidSignatureError" in caught.value.message


def test_unsigned_token_is_refused(settings):
    token = jwt.encode(
        {"sub": "a", "role": "admin", "exp": int(time.time()) + 60}, key=None, algorithm="none"
    )
    with pytest.raises(Unauthorized, match="'none'"):
        authenticate(settings, bearer(token))


def test_audience_is_checked_when_configured(settings):
    scoped = settings.model_copy(update={"jwt_audience": "jobtrail"})
    assert authenticate(scoped, bearer(mint_token(scoped, "a"))).subject == "a"
    with pytest.raises(Unauthorized, match="InvalidAudienceError"):
        authenticate(scoped, bearer(hs256({"sub": "a", "aud": "other", "exp": int(time.time()) + 60})))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-jwt"},
    ],
)
def test_missing_or_malformed_credentials_are_refused(settings, headers):
    with pytest.raises(Unauthorized):
        authenticate(settings, headers)


def test_api_key_is_a_machine_admin_and_only_its_hash_is_configured(settings):
    principal = authenticate(settings, {"X-API-Key": API_KEY})
    assert principal == Principal("ops-bot", Role.ADMIN, PrincipalKind.MACHINE) and principal.is_admin
    assert API_KEY not in json.dumps(settings.api_key_hashes)
    with pytest.raises(Unauthorized, match="unknown API key") as caught:
        authenticate(settings, {"X-API-Key": API_KEY + "x"})
    assert API_KEY not in caught.value.message


@pytest.mark.parametrize(
    "update,problem",
    [
        ({"jwt_secret": SecretStr("short")}, "at least 32 bytes"),
        ({"api_key_hashes": {"not-a-digest": "bot"}}, "sha256 hex"),
        ({"jwt_secret": None, "jwks_url": None, "api_key_hashes": {}}, "no credentials"),
    ],
)
def test_unusable_auth_settings_are_refused_at_start(settings, update, problem):
    with pytest.raises(ValueError, match=problem):
        check_auth_settings(settings.model_copy(update=update))


def test_default_settings_pass_the_start_check():
    check_auth_settings(Settings())


# ---- JWKS ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture
def jwks_settings(rsa_keys) -> Iterator[Settings]:
    """A JWKS endpoint on loopback listing the first key (kid "k1") only."""
    listed, _ = rsa_keys
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(listed.public_key()))
    app = flask.Flask("jwks")
    app.add_url_rule(
        "/jwks.json", "jwks", lambda: {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
    )
    with BackgroundServer(app) as server:
        yield Settings(jwt_secret=None, jwks_url=f"{server.url}/jwks.json")


def rs256(key: rsa.RSAPrivateKey, kid: str, **claims: object) -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, key, algorithm="RS256", headers={"kid": kid})


def test_rs256_token_verifies_against_the_jwks(jwks_settings, rsa_keys):
    principal = authenticate(jwks_settings, bearer(rs256(rsa_keys[0], "k1", sub="carol", role="admin")))
    assert principal == Principal("carol", Role.ADMIN, PrincipalKind.USER)


def test_rs256_token_from_an_unlisted_key_is_refused(jwks_settings, rsa_keys):
    with pytest.raises(Unauthorized, match="does not list"):
        authenticate(jwks_settings, bearer(rs256(rsa_keys[1], "k2", sub="carol")))
    with pytest.raises(Unauthorized, match="InvalidSignatureError"):
        authenticate(jwks_settings, bearer(rs256(rsa_keys[1], "k1", sub="carol")))


def test_hs256_token_signed_with_the_public_key_is_refused(jwks_settings, rsa_keys):
    """The classic algorithm confusion: with only a JWKS configured, HS256 is not accepted at all."""
    public_pem = (
        rsa_keys[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    forged = _forge_hs256_with(public_pem)
    with pytest.raises(Unauthorized, match="'HS256'"):
        authenticate(jwks_settings, bearer(forged))


def _forge_hs256_with(key_bytes: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(json.dumps({"sub": "carol", "role": "admin", "exp": int(time.time()) + 60}).encode())
    signature = hmac.new(key_bytes, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


# ---- visibility -------------------------------------------------------------------------------------
def test_someone_elses_job_reads_exactly_like_a_missing_one():
    from datetime import UTC, datetime

    from services.jobs.models import Job
    from services.pipelines.spec import JobStatus

    now = datetime.now(UTC)
    job = Job(
        pipeline="video",
        account_id="a",
        scenario_id="s",
        source_id="x",
        user_id="alice",
        job_id="job_1",
        trace_id="a-s-x",
        status=JobStatus.QUEUED,
        stage="received",
        progress_text="",
        created_at=now,
        updated_at=now,
        heartbeat_at=now,
    )
    assert visible(Principal("alice", Role.USER), job) is job
    assert visible(Principal("root", Role.ADMIN), job) is job
    with pytest.raises(JobNotFound) as caught:
        visible(Principal("bob", Role.USER), job)
    assert caught.value.message == "Job job_1 not found"
    with pytest.raises(Forbidden):
        Principal("bob", Role.USER).require_admin("pause queues")
