"""GET /api/stream and the dashboard page through the API app (Flask test client, no database):
auth (one-time tickets, and that no route takes a token in the URL), filters, and that a ticket
never reaches a span or a log line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import flask
import pytest

from services.api import create_app
from services.api.routing import RUNTIME_EXTENSION
from services.api.stream import STREAM_EXTENSION, Broadcaster, stream_broadcaster
from services.auth import mint_token
from services.clients import Clients
from services.jobs.repository import utcnow
from services.runtime import Runtime
from services.settings import Settings
from services.telemetry import Telemetry
from tests.unit.test_stream import FakeJobs, parse

STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "static"


@pytest.fixture
def settings() -> Settings:
    return Settings(metrics_exporter="none", trace_exporter="memory", sse_heartbeat_seconds=0.05)


@pytest.fixture
def telemetry(settings: Settings) -> Iterator[Telemetry]:
    telemetry = Telemetry.create(settings)
    with telemetry.activated():
        yield telemetry
    telemetry.shutdown()


@pytest.fixture
def app(settings: Settings, telemetry: Telemetry) -> Iterator[flask.Flask]:
    app = create_app(Runtime(settings, Clients(settings)))
    # The jobs table is a stand-in here; tests/emulator/test_stream.py runs the Firestore one.
    app.extensions[STREAM_EXTENSION] = Broadcaster(settings, FakeJobs(), clock=utcnow, stopping=lambda: False)
    yield app
    stream_broadcaster(app).close()


@pytest.fixture
def client(app: flask.Flask) -> flask.testing.FlaskClient:
    return app.test_client()


class TicketBook:
    """The repository's two ticket methods over a dict (tests/emulator/test_stream.py runs
    Firestore's)."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}

    def create_stream_ticket(self, ticket: str, holder: dict[str, str], ttl: timedelta) -> datetime:
        self.store[ticket] = {**holder, "expireAt": utcnow() + ttl}
        return self.store[ticket]["expireAt"]

    def redeem_stream_ticket(self, ticket: str) -> dict[str, Any] | None:
        holder = self.store.pop(ticket, None)
        return holder if holder and holder["expireAt"] > utcnow() else None


@pytest.fixture
def tickets(app: flask.Flask) -> dict[str, dict[str, Any]]:
    book = TicketBook()
    app.extensions[RUNTIME_EXTENSION].__dict__["repo"] = book  # Runtime.repo is a cached_property
    return book.store


def ticket_for(client, settings: Settings, subject: str = "alice", role: str = "user") -> str:
    headers = {"Authorization": f"Bearer {mint_token(settings, subject, role)}"}
    response = client.post("/api/stream/tickets", headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["streamUrl"] == f"/api/stream?ticket={body['ticket']}"
    return str(body["ticket"])


def test_the_stream_needs_credentials(client, tickets):
    response = client.get("/api/stream")
    assert response.status_code == 401 and response.get_json()["error"] == "UNAUTHORIZED"
    assert client.get("/api/stream?ticket=made-up").status_code == 401
    assert client.post("/api/stream/tickets").status_code == 401


def test_a_ticket_opens_one_stream_and_closing_it_unsubscribes(app, client, settings, tickets):
    ticket = ticket_for(client, settings)
    response = client.get(f"/api/stream?ticket={ticket}&status=running", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache, no-transform"
    first = next(iter(response.response))
    assert first.startswith(b"retry: ")
    hello = parse(first.split(b"\n", 1)[1])
    assert hello["event"] == "hello"
    assert hello["data"]["subject"] == "alice" and hello["data"]["role"] == "user"
    assert hello["data"]["filters"]["status"] == ["running"]
    assert stream_broadcaster(app).stats()["clients"] == 1

    response.close()  # what the server does when the browser goes away
    assert stream_broadcaster(app).stats()["clients"] == 0
    # Used once: the same URL (say, copied from a request log) opens nothing.
    again = client.get(f"/api/stream?ticket={ticket}&status=running")
    assert again.status_code == 401 and "ticket" in again.get_json()["message"]


def test_an_expired_ticket_opens_nothing(client, settings, tickets):
    ticket = ticket_for(client, settings)
    tickets[ticket]["expireAt"] = utcnow() - timedelta(seconds=1)
    assert client.get(f"/api/stream?ticket={ticket}").status_code == 401


def test_a_bearer_header_works_too(client, settings):
    headers = {"Authorization": f"Bearer {mint_token(settings, 'ops', 'admin')}"}
    response = client.get("/api/stream", headers=headers, buffered=False)
    assert response.status_code == 200
    assert parse(next(iter(response.response)).split(b"\n", 1)[1])["data"]["role"] == "admin"
    response.close()


def test_no_route_takes_a_bearer_token_in_the_query_string(client, settings, tickets):
    token = mint_token(settings, "ops", "admin")
    for path in ("/api/jobs", "/api/summary", "/api/stream"):
        assert client.get(f"{path}?access_token={token}").status_code == 401, path
    # Nor does a ticket open anything but the stream.
    assert client.get(f"/api/jobs?ticket={ticket_for(client, settings)}").status_code == 401


def test_bad_filters_are_a_400(client, settings, tickets):
    response = client.get(f"/api/stream?ticket={ticket_for(client, settings)}&pipeline=nope")
    assert response.status_code == 400 and response.get_json()["error"] == "INVALID_INPUT"


def test_the_ticket_reaches_no_span_and_no_log_line(client, settings, telemetry, tickets, caplog):
    caplog.set_level(logging.DEBUG)
    ticket = ticket_for(client, settings)
    ok = client.get(f"/api/stream?status=queued&ticket={ticket}", buffered=False)
    next(iter(ok.response))
    ok.close()
    unused = ticket_for(client, settings)
    refused = client.get(f"/api/stream?ticket={unused}&accountId=acc-1&pipeline=nope")
    assert refused.status_code == 400

    assert telemetry.span_exporter is not None
    spans = [s for s in telemetry.span_exporter.get_finished_spans() if s.name.endswith("/api/stream")]
    assert len(spans) == 2
    recorded = " ".join(str(value) for span in spans for value in (span.attributes or {}).values())
    assert "/api/stream?status=queued" in recorded  # the rest of the query is still there
    assert ticket not in recorded and unused not in recorded and "ticket=" not in recorded
    logged = " ".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert "/api/stream" in logged and ticket not in logged and unused not in logged


# ---- the page ------------------------------------------------------------------------------------
def test_the_page_is_served_at_the_root_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'id="login"' in page.data and b"/assets/dashboard/app.js" in page.data
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    for asset, mimetype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        response = client.get(f"/assets/dashboard/{asset}")
        assert response.status_code == 200 and response.mimetype == mimetype
        response.close()


def test_the_page_loads_nothing_from_elsewhere():
    """No CDN (the machine is offline, and the policy would block it anyway)."""
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|import\s""")
    for name in ("index.html", "app.css", "app.js"):
        assert not external.search((STATIC / name).read_text()), name
