"""Telemetry: JSON logs by traceId, OpenTelemetry traces across Pub/Sub, metrics, per-job cost.

Configured explicitly and switched by settings only (trace_exporter, metrics_exporter, log_level):

    telemetry = setup_telemetry(settings)   # once per process; later calls return the same object
    instrument_flask(app)                   # in the app factory
    log = get_logger(__name__); tracer = get_tracer(__name__)   # fine at import time
    get_metrics().record_execution("video", "success", 1.2)

Tests build their own with ``Telemetry.create(settings)`` and make it the active one for a while
(``with telemetry.activated(): ...``); code that calls ``setup_telemetry`` inside that block gets it.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from services.settings import Settings, get_settings
from services.telemetry import _active
from services.telemetry.cost import StageCost, charge_stage, cost_items
from services.telemetry.logging import bind_job, bind_labels, configure_logging, current_labels, get_logger
from services.telemetry.metrics import (
    METER_NAME,
    MIN_EXPORT_INTERVAL_SECONDS,
    Metrics,
    build_meter_provider,
    prometheus_exposition,
)
from services.telemetry.redaction import redact, register_secrets
from services.telemetry.tracing import (
    build_tracer_provider,
    cloud_logging_url,
    cloud_trace_url,
    consumer_span,
    context_from_attributes,
    current_span_id_hex,
    current_trace_id_hex,
    get_tracer,
    inject_into_attributes,
    install_global_tracer_provider,
    install_propagator,
    instrument_flask,
    instrument_requests,
)

if TYPE_CHECKING:
    import flask

__all__ = [
    "Metrics",
    "StageCost",
    "Telemetry",
    "active_telemetry",
    "add_metrics_route",
    "bind_job",
    "bind_labels",
    "charge_stage",
    "cloud_logging_url",
    "cloud_trace_url",
    "configure_logging",
    "consumer_span",
    "context_from_attributes",
    "cost_items",
    "current_labels",
    "current_span_id_hex",
    "current_trace_id_hex",
    "get_logger",
    "get_metrics",
    "get_tracer",
    "inject_into_attributes",
    "instrument_flask",
    "instrument_requests",
    "metrics_response",
    "redact",
    "setup_telemetry",
]


def build_resource(settings: Settings) -> Resource:
    """service.name plus, when exporting to Google Cloud, where this runs (Cloud Run service,
    revision, instance): Cloud Monitoring files each instance's series under it."""
    resource = Resource.create({"service.name": "jobtrail"})
    if "gcp" in (settings.trace_exporter, settings.metrics_exporter):
        from opentelemetry.resourcedetector.gcp_resource_detector import GoogleCloudResourceDetector

        resource = resource.merge(GoogleCloudResourceDetector().detect())
    return resource


@dataclass
class Telemetry:
    settings: Settings
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    metrics: Metrics
    prometheus_registry: CollectorRegistry
    # The in-memory exporter when trace_exporter == "memory" (tests read finished spans from it).
    span_exporter: InMemorySpanExporter | None = None
    _shutdown_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _is_shut_down: bool = field(default=False, repr=False)
    _metrics_flushed_at: float = field(default=0.0, repr=False)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        resource: Resource | None = None,
        monitoring_client: Any = None,
        trace_client: Any = None,
    ) -> Telemetry:
        """A fresh Telemetry from settings; touches no process-wide state (see ``setup_telemetry``).

        ``monitoring_client`` / ``trace_client`` replace the Google API clients (fakes in tests);
        ``resource`` skips the metadata-server lookup.
        """
        resource = resource or build_resource(settings)
        tracer_provider, span_exporter = build_tracer_provider(settings, resource, trace_client=trace_client)
        registry = CollectorRegistry(auto_describe=False)
        meter_provider = build_meter_provider(
            settings, resource, registry, monitoring_client=monitoring_client
        )
        return cls(
            settings=settings,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            metrics=Metrics(meter_provider.get_meter(METER_NAME)),
            prometheus_registry=registry,
            span_exporter=span_exporter,
        )

    def tracer(self, name: str) -> Tracer:
        return self.tracer_provider.get_tracer(name)

    def prometheus_exposition(self) -> tuple[bytes, str]:
        """The /metrics body of this Telemetry and its Content-Type."""
        return prometheus_exposition(self.prometheus_registry)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export every finished span and the current value of every metric now."""
        spans = self.tracer_provider.force_flush(timeout_millis)
        metrics = self.meter_provider.force_flush(timeout_millis)
        return bool(spans and metrics)

    def flush_after_request(self) -> None:
        """Export before a response where the CPU is throttled between requests (Cloud Run's
        request-based CPU): every finished span, and metrics at most once per Cloud Monitoring's
        sampling period (a later request, or the shutdown, sends what this one skipped)."""
        self.tracer_provider.force_flush(int(self.settings.telemetry_shutdown_seconds * 1000))
        now = time.monotonic()
        if now - self._metrics_flushed_at >= MIN_EXPORT_INTERVAL_SECONDS:
            self._metrics_flushed_at = now
            self.meter_provider.force_flush(int(self.settings.telemetry_shutdown_seconds * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporters (idempotent), within settings.telemetry_shutdown_seconds
        (Cloud Run's SIGTERM grace is 10 s); the Telemetry stops being active."""
        with self._shutdown_lock:
            if self._is_shut_down:
                return
            self._is_shut_down = True
        _active.remove(self)
        deadline = time.monotonic() + self.settings.telemetry_shutdown_seconds

        def left_millis() -> int:
            return max(1, int((deadline - time.monotonic()) * 1000))

        # Spans first (a trace of the last requests), then one last metric export.
        self.tracer_provider.force_flush(left_millis())
        self.meter_provider.shutdown(timeout_millis=left_millis())
        self.tracer_provider.shutdown()

    @contextmanager
    def activated(self) -> Iterator[Telemetry]:
        """Make this the Telemetry that get_tracer, get_metrics and setup_telemetry use, for the
        length of the block (tests); the previous one is active again afterwards."""
        install_propagator()
        register_secrets(self.settings)
        _active.push(self)
        try:
            yield self
        finally:
            _active.remove(self)


def setup_telemetry(settings: Settings | None = None) -> Telemetry:
    """The process's Telemetry, configured from settings on the first call; later calls (and
    calls while a test's Telemetry is active) return the active one unchanged.

    The first call also installs what is process-wide: the JSON log handler at settings.log_level,
    the W3C + X-Cloud-Trace-Context propagator, the global tracer provider, the requests
    instrumentation, and a flush at interpreter exit.
    """
    telemetry, created = _active.current_or_install(lambda: Telemetry.create(settings or get_settings()))
    if created:
        configure_logging(telemetry.settings)
        install_propagator()
        install_global_tracer_provider()
        instrument_requests()
        atexit.register(telemetry.shutdown)
    return telemetry


def active_telemetry() -> Telemetry | None:
    return _active.current()


_noop_metrics: Metrics | None = None


def get_metrics() -> Metrics:
    """The active Telemetry's metrics; instruments that record nothing when there is none."""
    global _noop_metrics
    telemetry = _active.current()
    if telemetry is not None:
        return telemetry.metrics
    if _noop_metrics is None:
        _noop_metrics = Metrics.noop()
    return _noop_metrics


def metrics_response() -> tuple[bytes, str]:
    """What GET /metrics answers (body, Content-Type): the active Telemetry's Prometheus text."""
    telemetry = _active.current()
    if telemetry is None:
        return prometheus_exposition(CollectorRegistry(auto_describe=False))
    return telemetry.prometheus_exposition()


def add_metrics_route(app: flask.Flask, path: str = "/metrics") -> flask.Flask:
    """Serve ``metrics_response()`` at GET ``path`` (the seed 004 scrape endpoint)."""
    import flask as _flask

    def prometheus_metrics() -> _flask.Response:
        body, content_type = metrics_response()
        return _flask.Response(body, content_type=content_type)

    app.add_url_rule(path, endpoint="prometheus_metrics", view_func=prometheus_metrics, methods=["GET"])
    return app
