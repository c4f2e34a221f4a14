"""One-time login codes (the local stack's sign-in link) against the Firestore emulator: a code
opens one session, once, within its minutes, and is stored only as a hash."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.api import create_app
from services.auth import Role
from services.auth.login_codes import issue_login_code, redeem_login_code
from services.errors import Unauthorized
from services.jobs.repository import JobRepository
from services.runtime import Runtime
from services.settings import Settings

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    return Runtime(settings, clients)


def test_a_code_opens_one_session_once(rt):
    client = create_app(rt).test_client()
    code = issue_login_code(rt.repo, rt.settings, "dana", Role.ADMIN)

    first = client.post("/api/auth/login", json={"code": code})
    assert first.status_code == 200, first.json
    assert first.json["me"] == {
        "success": True,
        "ok": True,
        "subject": "dana",
        "role": "admin",
        "kind": "user",
    }
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {first.json['token']}"})
    assert me.status_code == 200 and me.json["subject"] == "dana" and me.json["role"] == "admin"

    again = client.post("/api/auth/login", json={"code": code})
    assert again.status_code == 401 and again.json["error"] == "UNAUTHORIZED"
    for wrong in ("not-a-code", code[:-1]):
        assert client.post("/api/auth/login", json={"code": wrong}).status_code == 401
    assert client.post("/api/auth/login", json={"code": ""}).status_code == 400


def test_a_code_used_after_its_minutes_opens_nothing(rt):
    code = issue_login_code(rt.repo, rt.settings, "erin", Role.USER)
    later = rt.repo.clock() + timedelta(seconds=rt.settings.login_code_seconds + 1)
    late_repo = JobRepository(rt.repo.db, rt.settings, clock=lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        redeem_login_code(late_repo, rt.settings, code)
    # The late attempt still used it up.
    with pytest.raises(Unauthorized):
        redeem_login_code(rt.repo, rt.settings, code)


def test_only_the_codes_hash_is_stored(rt):
    code = issue_login_code(rt.repo, rt.settings, "finn", Role.USER)
    stored = list(rt.repo.collection("loginCodes").stream())
    try:
        assert len(stored) == 1 and stored[0].id != code
        assert code not in str(stored[0].to_dict())
    finally:
        for doc in stored:
            doc.reference.delete()
