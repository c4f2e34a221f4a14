"""Reporting services' credentials: reporter keys and Google-signed ID tokens, and every way they fail."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import flask
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.local.serve import BackgroundServer
from services.auth import hash_api_key
from services.auth.reporters import Reporter, authenticate_reporter, check_reporter_settings
from services.errors import Unauthorized
from services.settings import Settings

KEY = "rk_clip_render_0123456789"
AUDIENCE = "https://ingest.example.test"
EMAIL = "clip-render@proj.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture
def settings(keys) -> Iterator[Settings]:
    """Google's certs stood in for by a JWKS on loopback listing the first key only."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys[0].public_key()))
    app = flask.Flask("certs")
    app.add_url_rule(
        "/certs", "certs", lambda: {"keys": [{**jwk, "kid": "g1", "use": "sig", "alg": "RS256"}]}
    )
    with BackgroundServer(app) as server:
        yield Settings(
            ingest_api_key_hashes={hash_api_key(KEY): "clip-render"},
            ingest_service_accounts={EMAIL: "clip-render"},
            ingest_audience=AUDIENCE,
            google_id_token_certs_url=f"{server.url}/certs",
        )


def id_token(key: rsa.RSAPrivateKey, kid: str = "g1", **overrides: object) -> dict[str, str]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": EMAIL,
        "email_verified": True,
        "iat": now,
        "exp": now + 300,
        "sub": "1234567890",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='RS256', headers={'kid': kid})}"}


def test_a_reporter_key_names_its_service(settings):
    assert authenticate_reporter(settings, {"X-Reporter-Key": KEY}) == Reporter("clip-render")
    assert Reporter("clip-render").actor == "service:clip-render"


def test_a_google_id_token_of_a_known_service_account_names_its_service(settings, keys):
    assert authenticate_reporter(settings, id_token(keys[0])) == Reporter("clip-render")
    assert authenticate_reporter(settings, id_token(keys[0], iss="accounts.google.com")) == Reporter(
        "clip-render"
    )


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"aud": "https://elsewhere.test"}, "InvalidAudienceError"),
        ({"iss": "https://evil.test"}, "InvalidIssuerError"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"email": None}, "MissingRequiredClaimError"),
        ({"email_verified": False}, "no verified email"),
        ({"email": "someone@proj.iam.gserviceaccount.com"}, "not a known reporting service"),
    ],
)
def test_id_tokens_that_are_not_right_are_401(settings, keys, claims, problem):
    with pytest.raises(Unauthorized, match=problem):
        authenticate_reporter(settings, id_token(keys[0], **claims))


def test_a_token_signed_by_an_unlisted_key_is_a_bad_signature(settings, keys):
    with pytest.raises(Unauthorized, match="does not list"):
        authenticate_reporter(settings, id_token(keys[1], kid="g2"))
    with pytest.raises(Unauthorized, match="InvalidSignatureError"):
        authenticate_reporter(settings, id_token(keys[1], kid="g1"))


def test_an_hs256_token_is_refused_whatever_it_is_signed_with(settings):
    token = jwt.encode({"email": EMAIL, "aud": AUDIENCE}, "x" * 40, algorithm="HS256")
    with pytest.raises(Unauthorized, match="HS256"):
        authenticate_reporter(settings, {"Authorization": f"Bearer {token}"})


def test_without_an_audience_id_tokens_are_refused(settings, keys):
    with pytest.raises(Unauthorized, match="not accepted"):
        authenticate_reporter(settings.model_copy(update={"ingest_audience": None}), id_token(keys[0]))


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Reporter-Key": "wrong"}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic abc"}],
)
def test_missing_or_wrong_credentials_are_401_and_never_echoed(settings, headers):
    with pytest.raises(Unauthorized) as caught:
        authenticate_reporter(settings, headers)
    for value in headers.values():
        assert value not in caught.value.message


def test_reporter_key_hashes_must_be_digests():
    with pytest.raises(ValueError, match="sha256"):
        check_reporter_settings(Settings(ingest_api_key_hashes={KEY: "clip-render"}))
