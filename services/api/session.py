"""Who is signed in, and trading a one-time login code for a session (services/auth/login_codes.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from services.api.routing import ApiBlueprint, Call, current_runtime
from services.auth.login_codes import redeem_login_code
from services.auth.principal import Principal
from services.jobs.models import CamelModel
from services.reads.views import Envelope

bp = ApiBlueprint("session", __name__)


class Me(Envelope):
    """The caller, however they signed in (bearer token, API key, Identity-Aware Proxy)."""

    subject: str
    role: str
    kind: str

    @classmethod
    def of(cls, principal: Principal) -> Me:
        return cls(subject=principal.subject, role=principal.role.value, kind=principal.kind.value)


class LoginRequest(CamelModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64)


class LoginSession(Envelope):
    """A session token for the page (kept in the tab), and whose it is."""

    token: str
    expires_at: datetime
    me: Me


@bp.operation(
    "GET",
    "/api/auth/me",
    summary="Who the caller is signed in as",
    responses={200: Me},
)
def who_am_i(call: Call) -> Me:
    """Behind Identity-Aware Proxy the page has no token of its own: this tells it who IAP signed in."""
    return Me.of(call.principal)


@bp.operation(
    "POST",
    "/api/auth/login",
    summary="Trade a one-time login code (from a sign-in link) for a session token",
    body=LoginRequest,
    responses={200: LoginSession},
    errors=(401,),
    authenticated=False,
)
def login(call: None, body: LoginRequest) -> LoginSession:
    """Each code works once and for a few minutes (login_code_seconds)."""
    rt = current_runtime()
    session = redeem_login_code(rt.repo, rt.settings, body.code)
    return LoginSession(token=session.token, expires_at=session.expires_at, me=Me.of(session.principal))
