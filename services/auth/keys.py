"""Signing keys published as a JWKS (an identity provider's, IAP's), fetched once per instance and
cached, so a request never waits on a key download it has already done."""

from __future__ import annotations

import threading

import jwt

_clients: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


def jwks_client(url: str) -> jwt.PyJWKClient:
    with _lock:
        if url not in _clients:
            _clients[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        return _clients[url]
