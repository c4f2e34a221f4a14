"""Membership of the admins' Google group, asked of the Cloud Identity Groups API.

Two calls, through google-auth's ``AuthorizedSession`` with the instance's own credentials:
``groups:lookup`` turns the group's email into its resource name (kept for the instance's life),
and ``memberships:lookup`` answers whether a person is a member of it (200) or not (404); this
works on every Workspace and Cloud Identity edition, where ``checkTransitiveMembership`` needs a
premium one (docs/decisions/0014-operator-console.md). Answers are kept per person for a short
while, so a page's bursts of requests ask once. Any failure (no credentials, a timeout, a refusal,
an answer of another shape) means "not an admin": the person is still signed in as a user, and the
failure is logged by kind and status, never with a token.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import google.auth
import requests
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import AuthorizedSession

from services.settings import Settings

log = logging.getLogger(__name__)

GROUPS_READONLY_SCOPE = "https://www.googleapis.com/auth/cloud-identity.groups.readonly"
REQUEST_TIMEOUT_SECONDS = 5.0
# A failed check is kept briefly too: an outage must not put a five-second wait on every request,
# nor keep an admin out for the full cache time after it ends.
FAILURE_CACHE_SECONDS = 15.0


class MembershipCheckFailed(Exception):
    """The Groups API gave no usable answer (its status, if it gave one, is in the message)."""


class AdminGroup:
    """Whether people are members of one group, cached per person for ``ttl_seconds``."""

    def __init__(
        self,
        group_email: str,
        *,
        base_url: str,
        ttl_seconds: float,
        session: requests.Session | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.group_email = group_email
        self._base = base_url.rstrip("/")
        self._ttl = ttl_seconds
        self._session = session
        self._clock = clock
        self._group_name: str | None = None
        self._answers: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def is_member(self, email: str) -> bool:
        key = email.lower()
        now = self._clock()
        with self._lock:
            cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            member, keep_for = self._ask(key), self._ttl
        except (MembershipCheckFailed, requests.RequestException, GoogleAuthError, ValueError) as exc:
            log.warning(
                "admin group membership could not be checked; signing in as a user: %s (%s)",
                type(exc).__name__,
                str(exc) if isinstance(exc, MembershipCheckFailed) else "no answer",
                extra={"group": self.group_email},
            )
            member, keep_for = False, min(self._ttl, FAILURE_CACHE_SECONDS)
        with self._lock:
            self._answers[key] = (now + keep_for, member)
        return member

    def _ask(self, email: str) -> bool:
        group = self._group_resource_name()
        response = self._get(f"/v1/{group}/memberships:lookup", {"memberKey.id": email})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise MembershipCheckFailed(f"memberships:lookup answered {response.status_code}")
        name = response.json().get("name")
        if not isinstance(name, str) or not name.startswith(f"{group}/memberships/"):
            raise MembershipCheckFailed("memberships:lookup answered without the membership's name")
        return True

    def _group_resource_name(self) -> str:
        if self._group_name is None:
            response = self._get("/v1/groups:lookup", {"groupKey.id": self.group_email})
            if response.status_code != 200:
                raise MembershipCheckFailed(f"groups:lookup answered {response.status_code}")
            name = response.json().get("name")
            if not isinstance(name, str) or not name.startswith("groups/"):
                raise MembershipCheckFailed("groups:lookup answered without the group's name")
            self._group_name = name
        return self._group_name

    def _get(self, path: str, params: dict[str, str]) -> requests.Response:
        return self._authorized_session().get(
            f"{self._base}{path}", params=params, timeout=REQUEST_TIMEOUT_SECONDS
        )

    def _authorized_session(self) -> requests.Session:
        # The instance's credentials (Cloud Run: its service account), built on first use.
        if self._session is None:
            credentials, _ = google.auth.default(scopes=[GROUPS_READONLY_SCOPE])
            self._session = AuthorizedSession(credentials)
        return self._session


_groups: dict[tuple[str, str, float], AdminGroup] = {}
_groups_lock = threading.Lock()


def admin_group(settings: Settings) -> AdminGroup | None:
    """The instance's ``AdminGroup`` for ``settings.iap_admin_group`` (None when there is none)."""
    if not settings.iap_admin_group:
        return None
    key = (settings.iap_admin_group, settings.cloud_identity_url, settings.iap_admin_group_cache_seconds)
    with _groups_lock:
        if key not in _groups:
            _groups[key] = AdminGroup(
                settings.iap_admin_group,
                base_url=settings.cloud_identity_url,
                ttl_seconds=settings.iap_admin_group_cache_seconds,
            )
        return _groups[key]
