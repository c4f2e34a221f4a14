"""Which client exceptions read as "Firestore is unavailable" (503 STORE_UNAVAILABLE with
Retry-After) and which stay bugs (500). The emulator suite drives the real outage
(tests/emulator/test_store_outage.py); this pins the edges it cannot reach on demand."""

from __future__ import annotations

import flask
import pytest
from google.api_core.exceptions import DeadlineExceeded, PermissionDenied, RetryError, ServiceUnavailable

from services.api import create_app
from services.clients import Clients
from services.errors import StoreUnavailable, store_unavailable
from services.runtime import Runtime
from services.settings import Settings


@pytest.mark.parametrize(
    "exc",
    [
        ServiceUnavailable("connection refused"),
        DeadlineExceeded("deadline"),
        RetryError("Timeout of 2.0s exceeded", cause=ServiceUnavailable("connection refused")),
        RetryError("Timeout of 2.0s exceeded", cause=DeadlineExceeded("deadline")),
    ],
)
def test_an_unreachable_store_is_store_unavailable(exc: Exception):
    assert isinstance(store_unavailable(exc), StoreUnavailable)


@pytest.mark.parametrize(
    "exc",
    [PermissionDenied("no"), RetryError("gave up", cause=ValueError("bug")), ValueError("bug")],
)
def test_anything_else_is_not(exc: Exception):
    assert store_unavailable(exc) is None


def test_the_api_answers_503_with_retry_after_for_an_outage_and_500_for_a_bug():
    failing = flask.Blueprint("failing", __name__)

    @failing.get("/outage")
    def outage() -> flask.Response:
        raise RetryError("Timeout of 2.0s exceeded to 127.0.0.1:8681", cause=ServiceUnavailable("refused"))

    @failing.get("/bug")
    def bug() -> flask.Response:
        raise ValueError("bug")

    settings = Settings(metrics_exporter="none")
    client = create_app(Runtime(settings, Clients(settings)), extra_blueprints=(failing,)).test_client()
    response = client.get("/outage")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json is not None and response.json["error"] == "STORE_UNAVAILABLE"
    assert "127.0.0.1" not in response.get_data(as_text=True)
    broken = client.get("/bug")
    assert broken.status_code == 500 and broken.json is not None and broken.json["error"] == "INTERNAL"
