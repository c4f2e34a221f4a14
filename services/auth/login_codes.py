"""One-time login codes: a sign-in link that carries no token.

``issue_login_code`` stores a random code (only its hash) for a principal, valid for
``login_code_seconds``; the page trades it once (POST /api/auth/login) for a session JWT that stays
in the tab. A code seen in a terminal's scroll-back or a shared screen is worth nothing once used
or a few minutes old, where a printed token would have been good for hours. Codes need
``JWT_SECRET`` to mint the session token: local runs and development deployments (in the cloud,
people sign in through Identity-Aware Proxy instead).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.auth.credentials import mint_token
from services.auth.principal import Principal, PrincipalKind, Role
from services.errors import Unauthorized
from services.jobs.repository import JobRepository
from services.settings import Settings

_CODE_BYTES = 24
_MAX_CODE_CHARS = 64


@dataclass(frozen=True)
class Session:
    token: str
    principal: Principal
    expires_at: datetime


def issue_login_code(repo: JobRepository, settings: Settings, subject: str, role: Role) -> str:
    if settings.jwt_secret is None:
        raise ValueError("login codes need JWT_SECRET to mint the session they are traded for")
    code = secrets.token_urlsafe(_CODE_BYTES)
    repo.create_login_code(
        code, {"subject": subject, "role": role.value}, timedelta(seconds=settings.login_code_seconds)
    )
    return code


def redeem_login_code(repo: JobRepository, settings: Settings, code: str) -> Session:
    """The session ``code`` opens, once; ``Unauthorized`` if it is unknown, used or expired."""
    holder = repo.redeem_login_code(code) if 0 < len(code) <= _MAX_CODE_CHARS else None
    if holder is None or settings.jwt_secret is None:
        raise Unauthorized("the login code is unknown, used or expired: ask for a new link")
    principal = Principal(subject=holder["subject"], role=Role(holder["role"]), kind=PrincipalKind.USER)
    ttl = settings.login_session_seconds
    token = mint_token(settings, principal.subject, principal.role, ttl)
    return Session(token=token, principal=principal, expires_at=repo.clock() + timedelta(seconds=ttl))
