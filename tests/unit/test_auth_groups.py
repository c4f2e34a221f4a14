"""Admins by Google group: the Cloud Identity Groups API served on loopback as Google serves it
(groups:lookup, memberships:lookup), asked through google-auth's AuthorizedSession. A member signs
in through IAP as an admin, anyone else as a user; answers are cached for a short while; a failing
or unreachable API means "user" (fail closed), logged without the token."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import flask
import pytest
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession

from devtools.local.serve import BackgroundServer
from services.api import create_app
from services.auth import groups
from services.auth.groups import AdminGroup
from services.clients import Clients
from services.runtime import Runtime
from tests.unit.test_auth_iap import assertion, iap, iap_keys_url, settings  # noqa: F401 (fixtures)

GROUP = "jobtrail-admins@example.com"
GROUP_NAME = "groups/03abc123"
TOKEN = "ya29.fake-access-token-for-tests"


@dataclass
class FakeGroupsApi:
    members: set[str] = field(default_factory=lambda: {"grace@example.com"})
    status: int | None = None  # when set, every answer has this status (an outage, a refusal)
    calls: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def app(self) -> flask.Flask:
        app = flask.Flask("fake_cloud_identity")

        @app.get("/v1/groups:lookup")
        def lookup_group() -> tuple[dict[str, str], int]:
            self.calls.append("groups:lookup")
            self.authorizations.append(flask.request.headers.get("Authorization", ""))
            if self.status:
                return {"error": {"code": self.status}}, self.status
            if flask.request.args.get("groupKey.id") != GROUP:
                return {"error": {"code": 404}}, 404
            return {"name": GROUP_NAME}, 200

        @app.get(f"/v1/{GROUP_NAME}/memberships:lookup")
        def lookup_membership() -> tuple[dict[str, str], int]:
            self.calls.append("memberships:lookup")
            if self.status:
                return {"error": {"code": self.status}}, self.status
            member = flask.request.args.get("memberKey.id", "")
            if member not in self.members:
                return {"error": {"code": 404, "status": "NOT_FOUND"}}, 404
            return {"name": f"{GROUP_NAME}/memberships/1234"}, 200

        return app


class StaticToken(Credentials):
    """Credentials that always hold the same token, so the test sees it sent and never logged."""

    def __init__(self) -> None:
        super().__init__()
        self.token = TOKEN

    def refresh(self, request: object) -> None:
        self.token = TOKEN

    @property
    def expired(self) -> bool:
        return False

    @property
    def valid(self) -> bool:
        return True


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeGroupsApi, str]]:
    api = FakeGroupsApi()
    with BackgroundServer(api.app()) as server:
        yield api, server.url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def group_on(url: str, clock: Clock | None = None, credentials: Credentials | None = None) -> AdminGroup:
    return AdminGroup(
        GROUP,
        base_url=url,
        ttl_seconds=60,
        session=AuthorizedSession(credentials or AnonymousCredentials()),
        clock=clock or Clock(),
    )


def test_members_are_members_and_others_are_not(fake_api):
    api, url = fake_api
    group = group_on(url, credentials=StaticToken())
    assert group.is_member("Grace@Example.com") is True
    assert group.is_member("mallory@example.com") is False
    # The group's name is looked up once; the instance's credentials go with every call.
    assert api.calls == ["groups:lookup", "memberships:lookup", "memberships:lookup"]
    assert api.authorizations == [f"Bearer {TOKEN}"]


def test_answers_are_cached_for_the_ttl_then_asked_again(fake_api):
    api, url = fake_api
    clock = Clock()
    group = group_on(url, clock)
    assert group.is_member("grace@example.com")
    assert group.is_member("grace@example.com")
    assert api.calls.count("memberships:lookup") == 1
    api.members.clear()  # removed from the group
    clock.now += 61
    assert not group.is_member("grace@example.com")
    assert api.calls.count("memberships:lookup") == 2


@pytest.mark.parametrize("status", [403, 500])
def test_a_refusing_api_means_not_admin_and_is_logged_without_the_token(fake_api, caplog, status):
    api, url = fake_api
    api.status = status
    caplog.set_level(logging.WARNING, logger="services.auth.groups")
    assert group_on(url, credentials=StaticToken()).is_member("grace@example.com") is False
    assert f"answered {status}" in caplog.text
    assert TOKEN not in caplog.text and "Bearer" not in caplog.text


def test_an_unreachable_api_means_not_admin_and_a_failure_is_kept_only_briefly(caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    clock = Clock()
    group = group_on(dead, clock)
    caplog.set_level(logging.WARNING, logger="services.auth.groups")
    assert group.is_member("grace@example.com") is False
    assert "ConnectionError" in caplog.text
    caplog.clear()
    assert group.is_member("grace@example.com") is False
    assert caplog.text == ""  # cached: no second wait
    clock.now += groups.FAILURE_CACHE_SECONDS + 1
    assert group.is_member("grace@example.com") is False
    assert "ConnectionError" in caplog.text


@pytest.fixture
def group_settings(settings, fake_api, monkeypatch):  # noqa: F811 (the IAP fixture, extended)
    _, url = fake_api
    configured = settings.model_copy(update={"iap_admin_group": GROUP, "cloud_identity_url": url})
    # The instance's group, on the fake API with anonymous credentials (there are none here).
    key = (GROUP, url, configured.iap_admin_group_cache_seconds)
    monkeypatch.setitem(groups._groups, key, group_on(url))
    return configured


def test_a_group_member_signs_in_through_iap_as_admin_and_others_as_users(group_settings):
    client = create_app(Runtime(group_settings, Clients(group_settings))).test_client()
    me = client.get("/api/auth/me", headers=iap(assertion("grace@example.com")))
    assert (me.json["subject"], me.json["role"]) == ("grace@example.com", "admin")
    other = client.get("/api/auth/me", headers=iap(assertion("alice@example.com")))
    assert other.json["role"] == "user"
    listed = client.get("/api/auth/me", headers=iap(assertion("ops@example.com")))
    assert listed.json["role"] == "admin"  # the email list still counts beside the group


def test_without_credentials_on_the_machine_a_group_member_is_a_user(settings, monkeypatch, caplog):  # noqa: F811
    # No application default credentials here: the real default path fails, and fails closed.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    configured = settings.model_copy(
        update={
            "iap_admin_group": GROUP,
            "cloud_identity_url": "http://127.0.0.1:9",
            "iap_admin_group_cache_seconds": 7,
        }
    )
    monkeypatch.setattr(groups, "_groups", {})
    caplog.set_level(logging.WARNING, logger="services.auth.groups")
    client = create_app(Runtime(configured, Clients(configured))).test_client()
    me = client.get("/api/auth/me", headers=iap(assertion("grace@example.com")))
    assert me.status_code == 200 and me.json["role"] == "user"
    assert "DefaultCredentialsError" in caplog.text
