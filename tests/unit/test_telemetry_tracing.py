"""Tracing: providers by settings, one trace across HTTP, requests and Pub/Sub attributes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import flask
import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind

from services.settings import Settings
from services.telemetry import (
    Telemetry,
    active_telemetry,
    cloud_logging_url,
    cloud_trace_url,
    consumer_span,
    context_from_attributes,
    current_trace_id_hex,
    get_tracer,
    inject_into_attributes,
    instrument_flask,
    instrument_requests,
    setup_telemetry,
)
from services.telemetry.tracing import install_propagator

# Built at import time, before any Telemetry exists: it must still report to the active one.
module_tracer = get_tracer("tests.telemetry")


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry.create(Settings(trace_exporter="memory", metrics_exporter="none"))
    with telemetry.activated():
        yield telemetry
    telemetry.shutdown()


def finished(telemetry: Telemetry) -> dict[str, trace.Span]:
    assert telemetry.span_exporter is not None
    return {span.name: span for span in telemetry.span_exporter.get_finished_spans()}  # type: ignore[misc]


@pytest.mark.parametrize(("exporter", "in_memory"), [("memory", True), ("none", False), ("console", False)])
def test_memory_exporter_only_when_asked(exporter, in_memory):
    telemetry = Telemetry.create(Settings(trace_exporter=exporter, metrics_exporter="none"))
    try:
        assert (telemetry.span_exporter is not None) is in_memory
    finally:
        telemetry.shutdown()


def test_a_module_level_tracer_follows_the_active_telemetry(telemetry):
    with module_tracer.start_as_current_span("work"):
        pass
    assert "work" in finished(telemetry)

    other = Telemetry.create(Settings(trace_exporter="memory", metrics_exporter="none"))
    with other.activated(), module_tracer.start_as_current_span("elsewhere"):
        pass
    other.shutdown()
    assert "elsewhere" in finished(other)
    assert "elsewhere" not in finished(telemetry)
    assert active_telemetry() is telemetry


def test_w3c_attributes_round_trip_keeps_the_trace_id(telemetry):
    with module_tracer.start_as_current_span("publish") as span:
        attributes = inject_into_attributes({"jobId": "j1"})
    assert attributes["jobId"] == "j1"
    assert attributes["traceparent"].startswith("00-")
    assert "x-cloud-trace-context" not in attributes

    extracted = trace.get_current_span(context_from_attributes(attributes)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id
    assert extracted.span_id == span.get_span_context().span_id


def test_a_consumer_span_continues_the_publishers_trace_and_links_the_delivery(telemetry):
    with module_tracer.start_as_current_span("webhook"):
        attributes = inject_into_attributes()
    with (
        module_tracer.start_as_current_span("push delivery") as delivery,
        consumer_span("worker handle", attributes, attributes={"jobId": "j1"}) as worker,
    ):
        assert current_trace_id_hex() == f"{worker.get_span_context().trace_id:032x}"
    spans = finished(telemetry)
    assert spans["worker handle"].context.trace_id == spans["webhook"].context.trace_id
    assert spans["worker handle"].parent.span_id == spans["webhook"].context.span_id
    assert spans["worker handle"].kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in spans["worker handle"].links] == [
        delivery.get_span_context().span_id
    ]


def test_a_message_without_trace_context_continues_the_current_trace(telemetry):
    with (
        module_tracer.start_as_current_span("push delivery"),
        consumer_span("worker handle", {"jobId": "j1"}),
    ):
        pass
    spans = finished(telemetry)
    assert spans["worker handle"].parent.span_id == spans["push delivery"].context.span_id


def build_app(name: str) -> flask.Flask:
    """An app factory, as the entry points have."""
    app = flask.Flask(name)

    @app.get("/ping")
    def ping() -> dict[str, str | None]:
        return {"traceId": current_trace_id_hex()}

    @app.get("/metrics")
    def metrics() -> str:
        return ""

    return instrument_flask(app)


def test_several_factory_built_apps_are_each_traced_and_instrumenting_twice_is_harmless(telemetry):
    first, second = build_app("first"), build_app("second")
    instrument_flask(first)
    for app in (first, second):
        assert app.test_client().get("/ping").status_code == 200
    assert first.test_client().get("/metrics").status_code == 200

    servers = [s for s in telemetry.span_exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /ping", "GET /ping"]


def test_http_requests_continue_the_callers_traceparent(telemetry):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = (
        build_app("a")
        .test_client()
        .get("/ping", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    )
    assert response.json == {"traceId": trace_id}


def test_http_requests_accept_the_cloud_trace_header(telemetry):
    response = (
        build_app("a")
        .test_client()
        .get("/ping", headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"})
    )
    assert response.json == {"traceId": "105445aa7843bc8bf206b12000100000"}


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP server that records the headers of each request it gets."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def requests_instrumented() -> Iterator[None]:
    """requests patched for this test; unpatched after unless something had patched it before."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    was_instrumented = RequestsInstrumentor().is_instrumented_by_opentelemetry
    instrument_requests()
    instrument_requests()
    yield
    if not was_instrumented:
        RequestsInstrumentor().uninstrument()


def test_outgoing_requests_become_child_spans_and_carry_traceparent(
    telemetry, echo_server, requests_instrumented
):
    url, seen = echo_server
    with module_tracer.start_as_current_span("stage") as stage:
        assert requests.get(f"{url}/suno/generate", timeout=5).status_code == 200
    [client] = [s for s in telemetry.span_exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert client.parent.span_id == stage.get_span_context().span_id
    [headers] = seen
    assert headers["traceparent"].split("-")[1] == f"{stage.get_span_context().trace_id:032x}"


def test_console_links_point_at_the_trace_and_at_the_jobs_log_lines():
    settings = Settings(google_cloud_project="proj-1", console_base_url="https://console.example/")
    assert (
        cloud_trace_url(settings, "ab" * 16)
        == f"https://console.example/traces/list?project=proj-1&tid={'ab' * 16}"
    )
    assert cloud_logging_url(settings, "acc-scn-src") == (
        "https://console.example/logs/query;query=labels.traceId%3D%22acc-scn-src%22?project=proj-1"
    )


def test_no_active_span_no_trace_id():
    assert current_trace_id_hex() is None


def test_setup_telemetry_returns_the_active_telemetry(telemetry):
    assert setup_telemetry(Settings()) is telemetry
    assert setup_telemetry() is telemetry


SETUP_SCRIPT = """
import json, logging
from services.settings import Settings
from services.telemetry import setup_telemetry, get_tracer, get_logger, bind_labels
first = setup_telemetry(Settings(trace_exporter="memory", metrics_exporter="prometheus", log_level="INFO",
                                 google_cloud_project="proj-9", suno_api_key="planted-in-subprocess"))
second = setup_telemetry(Settings(trace_exporter="none"))
with get_tracer("x").start_as_current_span("s"), bind_labels(traceId="a-b-c"):
    get_logger("x").info("key planted-in-subprocess")
    get_logger("x").debug("below the level")
print(json.dumps({"same": first is second, "spans": len(first.span_exporter.get_finished_spans())}))
"""


def test_setup_telemetry_configures_the_process_once():
    # A fresh interpreter: the first call installs process-wide state this test run must keep clean.
    result = subprocess.run([sys.executable, "-c", SETUP_SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    *log_lines, summary = result.stdout.strip().splitlines()
    assert json.loads(summary) == {"same": True, "spans": 1}
    [line] = [json.loads(line) for line in log_lines]
    assert line["message"] == "key [REDACTED]"
    assert line["logging.googleapis.com/labels"]["traceId"] == "a-b-c"
    assert line["logging.googleapis.com/trace"].startswith("projects/proj-9/traces/")


def test_install_propagator_is_idempotent():
    install_propagator()
    install_propagator()
    carrier = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    assert trace.get_current_span(context_from_attributes(carrier)).get_span_context().is_valid


class FakeTraceServiceClient:
    def __init__(self) -> None:
        self.requests: list[object] = []

    def batch_write_spans(self, request: object) -> None:
        self.requests.append(request)


# The exporter's own translation uses an SDK helper deprecated upstream (BoundedDict); not ours.
@pytest.mark.filterwarnings("ignore:Deprecated since version 1.4.0:DeprecationWarning")
def test_gcp_trace_exporter_writes_finished_spans_to_cloud_trace():
    fake = FakeTraceServiceClient()
    settings = Settings(trace_exporter="gcp", metrics_exporter="none", google_cloud_project="proj-1")
    telemetry = Telemetry.create(settings, resource=Resource.create({}), trace_client=fake)
    try:
        with telemetry.tracer("t").start_as_current_span("stage processing") as span:
            pass
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()
    [request] = fake.requests
    assert request.name == "projects/proj-1"
    [written] = request.spans
    assert written.name == f"projects/proj-1/traces/{span.get_span_context().trace_id:032x}/spans/" + (
        f"{span.get_span_context().span_id:016x}"
    )
