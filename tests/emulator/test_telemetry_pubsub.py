"""One trace across a real Pub/Sub hop: a publisher span, the emulator's push to an instrumented
Flask app, and the worker spans (and log lines) inside it share the publisher's trace id."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from opentelemetry.trace import SpanKind
from werkzeug.serving import make_server

from services.clients import Clients
from services.settings import Settings
from services.telemetry import (
    Telemetry,
    bind_labels,
    configure_logging,
    consumer_span,
    get_logger,
    get_tracer,
    inject_into_attributes,
    instrument_flask,
)

pytestmark = pytest.mark.emulator

tracer = get_tracer("tests.telemetry.pubsub")


@pytest.fixture
def telemetry(settings: Settings) -> Iterator[Telemetry]:
    telemetry = Telemetry.create(settings.model_copy(update={"trace_exporter": "memory"}))
    with telemetry.activated():
        yield telemetry
    telemetry.shutdown()


@pytest.fixture
def log_lines(settings: Settings) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging(settings, stream=buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def push_worker_app(handled: threading.Event) -> flask.Flask:
    """What the worker entry point does with a push: continue the message's trace, run a stage."""
    app = flask.Flask("push-worker")

    @app.post("/push")
    def push() -> tuple[str, int]:
        message: dict[str, Any] = flask.request.get_json()["message"]
        attributes = message.get("attributes", {})
        with (
            consumer_span("worker handle", attributes),
            bind_labels(traceId=attributes.get("traceId"), jobId=attributes.get("jobId")),
            tracer.start_as_current_span("stage processing"),
        ):
            get_logger("tests.worker").info("processing")
        handled.set()
        return "", 204

    return instrument_flask(app)


@pytest.fixture
def push_endpoint() -> Iterator[tuple[str, threading.Event]]:
    handled = threading.Event()
    server = make_server("127.0.0.1", 0, push_worker_app(handled), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/push", handled
    server.shutdown()
    thread.join()


@pytest.fixture
def topic(clients: Clients, settings: Settings, push_endpoint: tuple[str, threading.Event]) -> Iterator[str]:
    """A topic with a push subscription to the instrumented app; both deleted after."""
    publisher = clients.publisher
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = clients.topic_path("telemetry")
    subscription_path = subscriber.subscription_path(
        settings.google_cloud_project, f"{settings.topic_prefix}telemetry-push"
    )
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(
        request={
            "name": subscription_path,
            "topic": topic_path,
            "push_config": {"push_endpoint": push_endpoint[0]},
        }
    )
    yield topic_path
    with contextlib.suppress(Exception):
        subscriber.delete_subscription(subscription=subscription_path)
    with contextlib.suppress(Exception):
        publisher.delete_topic(topic=topic_path)
    subscriber.close()


def test_publisher_and_worker_spans_are_one_trace_across_the_emulator(
    telemetry, log_lines, clients, topic, push_endpoint
):
    _, handled = push_endpoint
    with tracer.start_as_current_span("webhook", kind=SpanKind.PRODUCER) as webhook:
        attributes = inject_into_attributes({"jobId": "job-7", "traceId": "acc-scn-src"})
        clients.publisher.publish(topic, b"{}", **attributes).result(timeout=30)

    assert handled.wait(60), "the emulator never pushed the message"
    trace_id = webhook.get_span_context().trace_id
    spans = {s.name: s for s in telemetry.span_exporter.get_finished_spans()}
    assert spans["worker handle"].context.trace_id == trace_id
    assert spans["worker handle"].parent.span_id == webhook.get_span_context().span_id
    assert spans["stage processing"].context.trace_id == trace_id
    assert spans["stage processing"].parent.span_id == spans["worker handle"].context.span_id
    # The push request's own server span is linked, so Cloud Trace can still show the delivery.
    assert len(spans["worker handle"].links) == 1

    [line] = [json.loads(text) for text in log_lines.getvalue().splitlines() if '"processing"' in text]
    assert (
        line["logging.googleapis.com/trace"]
        == f"projects/{telemetry.settings.google_cloud_project}/traces/{trace_id:032x}"
    )
    assert line["logging.googleapis.com/labels"]["traceId"] == "acc-scn-src"
    assert line["logging.googleapis.com/labels"]["jobId"] == "job-7"
