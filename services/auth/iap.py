"""Sign-in through Identity-Aware Proxy: the signed header IAP adds to every request it lets in.

IAP signs ``x-goog-iap-jwt-assertion`` with ES256 keys Google publishes as a JWKS; the API checks
the signature against those keys only (a token cannot choose "none" or an HMAC), the audience
(this backend, so an assertion minted for another app is refused), the issuer, and the expiry.
The email claim names the person; ``settings.iap_admin_emails`` makes admins, and so does
membership of ``settings.iap_admin_group`` (services/auth/groups.py; a failed check means user). A request that
reaches the service around IAP carries no valid assertion, so the header alone proves nothing.
"""

from __future__ import annotations

from typing import Any

import jwt

from services.auth.groups import admin_group
from services.auth.keys import KeyWording, published_signing_key
from services.auth.principal import Principal, PrincipalKind, Role
from services.errors import Unauthorized
from services.settings import Settings

IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_ALGORITHMS = ["ES256"]
IAP_WORDING = KeyWording(
    not_a_jwt="the IAP assertion is not a JWT",
    kind="IAP assertions",
    keys_unreachable="IAP's public keys cannot be fetched right now",
    unknown_key="the IAP assertion is signed by a key IAP does not publish",
)
_REQUIRED: Any = {"require": ["exp", "iat", "aud", "iss", "sub", "email"]}


def verify_iap_assertion(settings: Settings, assertion: str) -> Principal:
    """The person IAP signed ``assertion`` for; ``Unauthorized`` naming the problem otherwise."""
    if settings.iap_audience is None:
        raise Unauthorized("Identity-Aware Proxy sign-in is not configured")
    key = published_signing_key(
        assertion, jwks_url=settings.iap_jwks_url, algorithms=IAP_ALGORITHMS, wording=IAP_WORDING
    )
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=IAP_ALGORITHMS,
            audience=settings.iap_audience,
            issuer=IAP_ISSUER,
            options=_REQUIRED,
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the IAP assertion has expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("the IAP assertion was issued for another application") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"the IAP assertion is not valid ({type(exc).__name__})") from None
    email = claims["email"]
    if not isinstance(email, str) or "@" not in email:
        raise Unauthorized("the IAP assertion names no email")
    return Principal(subject=email.lower(), role=iap_role(settings, email), kind=PrincipalKind.USER)


def iap_role(settings: Settings, email: str) -> Role:
    """Admin if listed by email or a member of the admins' group; user otherwise."""
    if email.lower() in {address.lower() for address in settings.iap_admin_emails}:
        return Role.ADMIN
    group = admin_group(settings)
    return Role.ADMIN if group is not None and group.is_member(email) else Role.USER
