"""OpenTelemetry tracing: providers per settings, instrumentation, and context across Pub/Sub.

Tracers handed out here (``get_tracer``, the Flask and requests instrumentations) follow whichever
Telemetry is active (see ``services.telemetry._active``) at the moment a span starts, so a
module-level ``tracer = get_tracer(__name__)`` reports to the process's exporter in production and
to a test's in-memory exporter in a test, with no global that can only be set once.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.cloud_trace_propagator import CloudTraceOneWayPropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from services.settings import Settings
from services.telemetry import _active

if TYPE_CHECKING:
    import flask

# Scrapes and health checks would otherwise be most of the traces and none of the interest.
_UNTRACED_URLS = r"/metrics$,/healthz$"


def build_tracer_provider(
    settings: Settings, resource: Resource, *, trace_client: Any = None
) -> tuple[TracerProvider, InMemorySpanExporter | None]:
    """A TracerProvider exporting where ``settings.trace_exporter`` says, and the in-memory exporter
    when that is "memory" (so tests can read the finished spans)."""
    # Spans are recorded even with no exporter: log lines and jobs still carry real trace ids.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    memory: InMemorySpanExporter | None = None
    match settings.trace_exporter:
        case "memory":
            memory = InMemorySpanExporter()
            # Synchronous, so a test sees a span the moment it ends.
            provider.add_span_processor(SimpleSpanProcessor(memory))
        case "console":
            # stderr: stdout carries the one-JSON-object-per-line logs, which these would break.
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        case "gcp":
            from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

            with warnings.catch_warnings():
                # Deprecated upstream in favour of OTLP to telemetry.googleapis.com; see ADR 0002.
                warnings.simplefilter("ignore", DeprecationWarning)
                exporter = CloudTraceSpanExporter(
                    project_id=settings.google_cloud_project, client=trace_client
                )
            provider.add_span_processor(BatchSpanProcessor(exporter))
        case "none":
            pass
    return provider, memory


class _ActiveTracer(trace.Tracer):
    """Starts each span on the active Telemetry's provider (a no-op tracer when there is none)."""

    def __init__(
        self, name: str, version: str | None, schema_url: str | None, attributes: Attributes
    ) -> None:
        self._scope = (name, version, schema_url, attributes)
        self._lock = threading.Lock()
        self._cached: tuple[trace.TracerProvider, trace.Tracer] | None = None
        self._noop = trace.NoOpTracer()

    def _delegate(self) -> trace.Tracer:
        telemetry = _active.current()
        if telemetry is None:
            return self._noop
        provider = telemetry.tracer_provider
        with self._lock:
            if self._cached is None or self._cached[0] is not provider:
                self._cached = (provider, provider.get_tracer(*self._scope))
            return self._cached[1]

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._delegate().start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        with self._delegate().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


class _ActiveTracerProvider(trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return _ActiveTracer(instrumenting_module_name, instrumenting_library_version, schema_url, attributes)


ACTIVE_TRACER_PROVIDER: trace.TracerProvider = _ActiveTracerProvider()
_install_lock = threading.Lock()
_global_provider_set = False


def get_tracer(name: str) -> trace.Tracer:
    """A tracer reporting to the active Telemetry; safe to create at import time."""
    return ACTIVE_TRACER_PROVIDER.get_tracer(name)


def install_propagator() -> None:
    """W3C traceparent in and out; Google's X-Cloud-Trace-Context accepted on the way in.

    The one-way Cloud Trace propagator only extracts, so what we send (HTTP headers, Pub/Sub
    attributes) stays plain W3C; it comes first so a W3C header, when both are present, wins.
    """
    propagate.set_global_textmap(
        CompositePropagator([CloudTraceOneWayPropagator(), TraceContextTextMapPropagator()])
    )


def install_global_tracer_provider() -> None:
    """Make third-party code that calls ``opentelemetry.trace.get_tracer`` follow the active Telemetry."""
    global _global_provider_set
    with _install_lock:
        if not _global_provider_set:
            trace.set_tracer_provider(ACTIVE_TRACER_PROVIDER)
            _global_provider_set = True


def instrument_flask(app: flask.Flask) -> flask.Flask:
    """Trace every request of ``app`` (a server span, parented on the caller's traceparent or
    X-Cloud-Trace-Context). Safe for apps built by a factory, several per process, and twice."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    install_propagator()
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        FlaskInstrumentor.instrument_app(
            app,
            tracer_provider=ACTIVE_TRACER_PROVIDER,
            # Cloud Run already measures requests; custom metrics (billed per series) stay ours.
            meter_provider=NoOpMeterProvider(),
            excluded_urls=_UNTRACED_URLS,
        )
    return app


def instrument_requests() -> None:
    """Every outgoing ``requests`` call becomes a client span carrying traceparent (idempotent)."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    instrumentor = RequestsInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=ACTIVE_TRACER_PROVIDER, meter_provider=NoOpMeterProvider())


def inject_into_attributes(
    attributes: Mapping[str, str] | None = None, *, context: Context | None = None
) -> dict[str, str]:
    """``attributes`` plus the current trace context (W3C traceparent/tracestate), for a Pub/Sub message."""
    carrier = dict(attributes or {})
    propagate.inject(carrier, context=context)
    return carrier


def context_from_attributes(attributes: Mapping[str, str] | None) -> Context:
    """The trace context a publisher put in a message's attributes (empty if it put none)."""
    return propagate.extract(dict(attributes or {}))


@contextmanager
def consumer_span(
    name: str, message_attributes: Mapping[str, str] | None, *, attributes: Attributes = None
) -> Iterator[Span]:
    """A CONSUMER span continuing the publisher's trace, linked to the span that delivered it.

    A Pub/Sub push arrives as an HTTP request with its own server span; the message's trace is the
    one that matters (webhook -> worker -> publish), so that becomes the parent and the delivery
    span a link. A message without trace context continues the current trace instead.
    """
    delivery = trace.get_current_span().get_span_context()
    extracted = context_from_attributes(message_attributes)
    parent = extracted if trace.get_current_span(extracted).get_span_context().is_valid else None
    links = [Link(delivery)] if parent is not None and delivery.is_valid else None
    with get_tracer("jobtrail.pubsub").start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
    ) as span:
        yield span


def current_trace_id_hex() -> str | None:
    """The active span's trace id as 32 hex digits (what Cloud Trace and the job store), or None."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def caller_trace_id_hex(carrier: Mapping[str, str]) -> str | None:
    """The trace a caller is in: the active span's, else the traceparent in ``carrier`` (request
    headers, message attributes), so a job stores its trace even where this instance samples
    nothing."""
    if (active := current_trace_id_hex()) is not None:
        return active
    span_context = trace.get_current_span(propagate.extract(dict(carrier))).get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def current_span_id_hex() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return trace.format_span_id(span_context.span_id) if span_context.is_valid else None


def cloud_trace_url(settings: Settings, trace_id_hex: str) -> str:
    """The Cloud Trace page of one trace."""
    query = urlencode({"project": settings.google_cloud_project, "tid": trace_id_hex})
    return f"{settings.console_base_url.rstrip('/')}/traces/list?{query}"


def cloud_logging_url(settings: Settings, trace_id_label: str) -> str:
    """Logs Explorer showing every line of one job: ``labels.traceId="acc-scn-src"``."""
    escaped = trace_id_label.replace("\\", "\\\\").replace('"', '\\"')
    log_filter = f'labels.traceId="{escaped}"'
    return (
        f"{settings.console_base_url.rstrip('/')}/logs/query;query={quote(log_filter, safe='')}"
        f"?{urlencode({'project': settings.google_cloud_project})}"
    )
