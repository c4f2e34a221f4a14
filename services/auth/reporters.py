"""Credentials of reporting services (services/ingest): who is reporting, never what they may write.

Two ways, either per service:
- a reporter key in ``X-Reporter-Key``; only its SHA-256 is configured
  (``settings.ingest_api_key_hashes``: hex digest -> service name);
- ``Authorization: Bearer <Google-signed ID token>`` of the service's own service account
  (``settings.ingest_service_accounts``: email -> service name), minted for
  ``settings.ingest_audience``. Signature, issuer, audience, expiry and a verified email are all
  checked; Google's keys are fetched from ``settings.google_id_token_certs_url`` and cached.

Which pipelines and stages a service may write is the pipeline declarations' business
(``reporters:``), checked by services/ingest. Failures are ``Unauthorized`` naming the problem,
never the credential.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from werkzeug.datastructures import Headers

from services.auth.credentials import hash_api_key
from services.auth.keys import KeyWording, published_signing_key
from services.errors import Unauthorized
from services.settings import Settings

REPORTER_KEY_HEADER = "X-Reporter-Key"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
ID_TOKEN_ALGORITHMS = ["RS256"]
ID_TOKEN_WORDING = KeyWording(
    not_a_jwt="the bearer token is not a JWT",
    kind="ID tokens",
    keys_unreachable="Google's signing keys cannot be fetched right now",
    unknown_key="the ID token is signed by a key Google does not list",
)


@dataclass(frozen=True)
class Reporter:
    service: str

    @property
    def actor(self) -> str:
        """How job events and audit records name this service."""
        return f"service:{self.service}"


def check_reporter_settings(settings: Settings) -> None:
    """Refuse to start with reporter keys that could never match."""
    for digest in settings.ingest_api_key_hashes:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("INGEST_API_KEY_HASHES keys must be lower-case sha256 hex digests of the keys")


def verify_reporter_key(settings: Settings, key: str) -> Reporter:
    digest = hash_api_key(key)
    service = None
    # Every digest is compared, so the time taken does not tell which one matched.
    for known, name in settings.ingest_api_key_hashes.items():
        if hmac.compare_digest(known, digest):
            service = name
    if service is None:
        raise Unauthorized("unknown reporter key")
    return Reporter(service)


def verify_google_id_token(settings: Settings, token: str) -> Reporter:
    if not settings.ingest_audience:
        raise Unauthorized("ID tokens are not accepted here (no ingest audience is configured)")
    key = published_signing_key(
        token,
        jwks_url=settings.google_id_token_certs_url,
        algorithms=ID_TOKEN_ALGORITHMS,
        wording=ID_TOKEN_WORDING,
    )
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=ID_TOKEN_ALGORITHMS,
            audience=settings.ingest_audience,
            issuer=GOOGLE_ISSUERS,
            options={"require": ["exp", "iat", "iss", "aud", "email"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the ID token has expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"the ID token is not valid ({type(exc).__name__})") from None
    email = claims.get("email")
    if claims.get("email_verified") is not True or not isinstance(email, str):
        raise Unauthorized("the ID token carries no verified email")
    service = settings.ingest_service_accounts.get(email)
    if service is None:
        raise Unauthorized("the ID token's service account is not a known reporting service")
    return Reporter(service)


def authenticate_reporter(settings: Settings, headers: Mapping[str, str] | Headers) -> Reporter:
    """The reporting service behind a request's headers; ``Unauthorized`` without valid credentials."""
    key = headers.get(REPORTER_KEY_HEADER)
    if key:
        return verify_reporter_key(settings, key)
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return verify_google_id_token(settings, token.strip())
    raise Unauthorized(f"send {REPORTER_KEY_HEADER} or Authorization: Bearer <Google ID token>")
