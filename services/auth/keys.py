"""Signing keys published as a JWKS (an identity provider's, IAP's), fetched once per instance and
cached, so a request never waits on a key download it has already done."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import jwt

from services.errors import Unauthorized

_clients: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


def jwks_client(url: str) -> jwt.PyJWKClient:
    with _lock:
        if url not in _clients:
            _clients[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        return _clients[url]


@dataclass(frozen=True)
class KeyWording:
    """How a caller names its tokens and their signer in the ``Unauthorized`` it raises."""

    not_a_jwt: str  # e.g. "the IAP assertion is not a JWT"
    kind: str  # plural, for the refused algorithm: "IAP assertions"
    keys_unreachable: str
    unknown_key: str


def published_signing_key(
    token: str, *, jwks_url: str, algorithms: list[str], wording: KeyWording
) -> jwt.PyJWK:
    """The key from ``jwks_url`` that signed ``token``, once its header names an accepted
    algorithm (never ``none`` or a symmetric one); ``Unauthorized`` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized(wording.not_a_jwt) from None
    if header.get("alg") not in algorithms:
        raise Unauthorized(f"{wording.kind} signed with {header.get('alg')!r} are not accepted")
    try:
        return jwks_client(jwks_url).get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError:
        raise Unauthorized(wording.keys_unreachable) from None
    except jwt.PyJWTError:
        raise Unauthorized(wording.unknown_key) from None
