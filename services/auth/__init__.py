"""Authentication (Bearer JWT, X-API-Key) and the owner/admin rules of the API.

Inside a request of the API app (services/api), ``request_principal(request)`` is who is calling.
"""

from __future__ import annotations

import flask

from services.auth.credentials import (
    API_KEY_HEADER,
    authenticate,
    check_auth_settings,
    hash_api_key,
    mint_token,
    verify_api_key,
    verify_jwt,
)
from services.auth.principal import Principal, PrincipalKind, Role, visible
from services.settings import Settings

__all__ = [
    "API_KEY_HEADER",
    "Principal",
    "PrincipalKind",
    "Role",
    "authenticate",
    "check_auth_settings",
    "hash_api_key",
    "mint_token",
    "request_principal",
    "verify_api_key",
    "verify_jwt",
    "visible",
]

SETTINGS_EXTENSION = "jobtrail.settings"
_PRINCIPAL_KEY = "jobtrail_principal"


def request_principal(request: flask.Request) -> Principal:
    """Who sent ``request`` (authenticated once per request); ``Unauthorized`` otherwise."""
    cached = flask.g.get(_PRINCIPAL_KEY)
    if isinstance(cached, Principal):
        return cached
    settings: Settings = flask.current_app.extensions[SETTINGS_EXTENSION]
    principal = authenticate(settings, request.headers)
    setattr(flask.g, _PRINCIPAL_KEY, principal)
    return principal
