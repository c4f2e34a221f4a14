"""Credentials -> Principal: Bearer JWTs for people, X-API-Key for machines, and Identity-Aware
Proxy's signed header for people IAP signed in (services/auth/iap.py, when configured).

- JWT: HS256 signed with ``settings.jwt_secret``, or RS256/ES256 signed by a key from the JWKS at
  ``settings.jwks_url`` (PyJWKClient, keys cached per instance). Claims: ``sub`` (required),
  ``exp`` (required), ``role`` ("admin" or anything else = user), ``aud`` when
  ``settings.jwt_audience`` is set. The algorithm list is fixed per key source, so a token can
  never pick its own verification (no "none", no HS256 signed with a public key).
- API key: only its SHA-256 is configured (``settings.api_key_hashes``: hex digest -> principal
  name); the clear key is never stored. Machine principals are admins.

Every failure is ``Unauthorized`` with a message that names the problem, never the credential.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import jwt
from werkzeug.datastructures import Headers

from services.auth.iap import IAP_HEADER, verify_iap_assertion
from services.auth.keys import jwks_client
from services.auth.principal import Principal, PrincipalKind, Role
from services.errors import Unauthorized
from services.settings import Settings

API_KEY_HEADER = "X-API-Key"
HMAC_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["RS256", "ES256"]
# RFC 7518 §3.2: an HS256 key shorter than the hash output is refused.
MIN_HMAC_KEY_BYTES = 32
_JWT_OPTIONS: Any = {"require": ["exp", "sub"], "enforce_minimum_key_length": True}


def hash_api_key(key: str) -> str:
    """What ``settings.api_key_hashes`` holds for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_auth_settings(settings: Settings) -> None:
    """Refuse to start with an auth configuration that would fail every request."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    if settings.jwt_secret is not None and len(secret.encode()) < MIN_HMAC_KEY_BYTES:
        raise ValueError(f"JWT_SECRET must be at least {MIN_HMAC_KEY_BYTES} bytes (RFC 7518 §3.2)")
    if (
        settings.jwt_secret is None
        and not settings.jwks_url
        and not settings.api_key_hashes
        and not settings.iap_audience
    ):
        raise ValueError(
            "no credentials can be verified: set JWT_SECRET, JWKS_URL, API_KEY_HASHES or IAP_AUDIENCE"
        )
    for digest in settings.api_key_hashes:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("API_KEY_HASHES keys must be lower-case sha256 hex digests of the keys")


def mint_token(
    settings: Settings, subject: str, role: Role | str = Role.USER, ttl_seconds: int = 3600
) -> str:
    """An HS256 token for ``subject`` (local runs, tests, the CLI against a dev deployment)."""
    if settings.jwt_secret is None:
        raise ValueError("JWT_SECRET is not set: tokens come from the identity provider (JWKS)")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "role": str(role), "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def _principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the token's sub claim must be a non-empty string")
    role = Role.ADMIN if claims.get("role") == Role.ADMIN.value else Role.USER
    return Principal(subject=subject, role=role, kind=PrincipalKind.USER)


def verify_jwt(settings: Settings, token: str) -> Principal:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("the bearer token is not a JWT") from None
    algorithm = header.get("alg")
    key: Any
    if algorithm in HMAC_ALGORITHMS and settings.jwt_secret is not None:
        key, algorithms = settings.jwt_secret.get_secret_value(), HMAC_ALGORITHMS
    elif algorithm in JWKS_ALGORITHMS and settings.jwks_url:
        try:
            key = jwks_client(settings.jwks_url).get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise Unauthorized("the identity provider's keys cannot be fetched right now") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is signed by a key the identity provider does not list") from None
        algorithms = JWKS_ALGORITHMS
    else:
        raise Unauthorized(f"tokens signed with {algorithm!r} are not accepted")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            options={**_JWT_OPTIONS, "verify_aud": settings.jwt_audience is not None},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"the token is not valid ({type(exc).__name__})") from None
    return _principal_from_claims(claims)


def verify_api_key(settings: Settings, key: str) -> Principal:
    digest = hash_api_key(key)
    # Compare against every configured digest so the time taken does not depend on which matched.
    name = None
    for known, principal_name in settings.api_key_hashes.items():
        if hmac.compare_digest(known, digest):
            name = principal_name
    if name is None:
        raise Unauthorized("unknown API key")
    return Principal(subject=name, role=Role.ADMIN, kind=PrincipalKind.MACHINE)


def authenticate(settings: Settings, headers: Mapping[str, str] | Headers) -> Principal:
    """The principal behind a request's headers; ``Unauthorized`` without valid credentials.
    Machines and the CLI keep their API keys and bearer tokens behind IAP; a request that brings
    none of them is judged by its IAP assertion, which must then be valid."""
    api_key = headers.get(API_KEY_HEADER)
    if api_key:
        return verify_api_key(settings, api_key)
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return verify_jwt(settings, token.strip())
    if settings.iap_audience is not None:
        return verify_iap_assertion(settings, headers.get(IAP_HEADER, ""))
    raise Unauthorized(f"send Authorization: Bearer <JWT> or {API_KEY_HEADER}")
