"""Metrics: one set of OpenTelemetry instruments, read by Prometheus at /metrics and exported to
Cloud Monitoring as custom metrics.

Instruments carry their final exposed names (``worker_success_total``, ``stage_duration_seconds``)
so Prometheus and Cloud Monitoring show the same names (the Prometheus exporter would otherwise add
``_total`` and unit suffixes of its own). Labels are bounded sets (pipeline, stage, status,
workflow, subscription, cost kind), never job ids: the number of series, and so of Cloud Monitoring
writes, does not grow with the number of jobs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry.metrics import Meter, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from services.settings import Settings

METER_NAME = "jobtrail"
# Cloud Monitoring metric types are "custom.googleapis.com/jobtrail/<name>" (alert policies use these).
CLOUD_MONITORING_PREFIX = "custom.googleapis.com/jobtrail"
# Cloud Monitoring accepts one point per series per 5 s; a shorter interval would be rejected.
MIN_EXPORT_INTERVAL_SECONDS = 5.0

# Worker actions and stages run from milliseconds (a Firestore write) to minutes (a Suno render).
DURATION_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

METRIC_NAMES = (
    "worker_success_total",
    "worker_failure_total",
    "worker_dlq_total",
    "worker_action_duration_seconds",
    "jobs_started_total",
    "jobs_finished_total",
    "stage_duration_seconds",
    "jobs_in_flight",
    "stale_jobs_found_total",
    "job_cost_total",
)

Outcome = Literal["success", "failure", "dlq"]


def export_interval_seconds(settings: Settings) -> float:
    """How often the background reader exports; never, where the CPU is throttled between requests
    (each request flushes instead, services/http.py)."""
    if settings.cpu_allocation == "request":
        return math.inf
    return max(MIN_EXPORT_INTERVAL_SECONDS, settings.metrics_export_interval_seconds)


def build_cloud_monitoring_exporter(settings: Settings, *, client: Any = None) -> Any:
    """CloudMonitoringMetricsExporter writing ``custom.googleapis.com/jobtrail/*``.

    It already writes at most 200 series per CreateTimeSeries call (MAX_BATCH_WRITE), one point per
    series per export. The unique-identifier label keeps two exporters on one instance (gunicorn
    workers share the Cloud Run instance id) from writing the same series and being rejected.
    """
    from opentelemetry.exporter.cloud_monitoring import CloudMonitoringMetricsExporter

    with warnings.catch_warnings():
        # Deprecated upstream in favour of OTLP to telemetry.googleapis.com; see ADR 0002.
        warnings.simplefilter("ignore", DeprecationWarning)
        return CloudMonitoringMetricsExporter(
            project_id=settings.google_cloud_project,
            client=client,
            add_unique_identifier=True,
            prefix=CLOUD_MONITORING_PREFIX,
        )


def build_meter_provider(
    settings: Settings, resource: Resource, registry: CollectorRegistry, *, monitoring_client: Any = None
) -> MeterProvider:
    """A MeterProvider with the readers ``settings.metrics_exporter`` asks for.

    "prometheus": /metrics only. "gcp": /metrics as well (it costs nothing until scraped) plus a
    periodic export to Cloud Monitoring. "none": instruments record into nothing.
    """
    readers: list[MetricReader] = []
    if settings.metrics_exporter in ("prometheus", "gcp"):
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        # Own registry per Telemetry: tests build several per process and must not collide.
        readers.append(
            PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=registry)
        )
    if settings.metrics_exporter == "gcp":
        readers.append(
            PeriodicExportingMetricReader(
                build_cloud_monitoring_exporter(settings, client=monitoring_client),
                export_interval_millis=export_interval_seconds(settings) * 1000,
            )
        )
    return MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)


def prometheus_exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The /metrics body and its Content-Type: the classic text format, which every Prometheus
    (and the Debian promtool) reads; CONTENT_TYPE_LATEST would announce 1.0.0 to 2.x scrapers."""
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


class Metrics:
    """The instruments every entry point records into, with the label sets fixed here."""

    def __init__(self, meter: Meter) -> None:
        self._success = meter.create_counter(
            "worker_success_total", unit="1", description="Worker executions that succeeded, by workflow."
        )
        self._failure = meter.create_counter(
            "worker_failure_total",
            unit="1",
            description="Worker executions that failed (dead-lettered ones included), by workflow.",
        )
        self._dlq = meter.create_counter(
            "worker_dlq_total", unit="1", description="Worker executions that ended in the dead-letter queue."
        )
        self._action_duration = meter.create_histogram(
            "worker_action_duration_seconds",
            unit="s",
            description="How long a worker action ran, by workflow.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_SECONDS,
        )
        self._jobs_started = meter.create_counter(
            "jobs_started_total", unit="1", description="Jobs accepted, by pipeline."
        )
        self._jobs_finished = meter.create_counter(
            "jobs_finished_total",
            unit="1",
            description="Jobs that reached a terminal status, by pipeline and status.",
        )
        self._stage_duration = meter.create_histogram(
            "stage_duration_seconds",
            unit="s",
            description="Time a job spent in a stage, by pipeline and stage.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_SECONDS,
        )
        self._in_flight = meter.create_up_down_counter(
            "jobs_in_flight",
            unit="1",
            description="Jobs being worked on by this instance right now, by pipeline.",
        )
        self._stale_found = meter.create_counter(
            "stale_jobs_found_total", unit="1", description="Stale jobs the sweeper found, by pipeline."
        )
        self._cost = meter.create_counter(
            "job_cost_total",
            unit="1",
            description="What jobs spent, in the rates' currency, by pipeline and kind.",
        )

    @classmethod
    def noop(cls) -> Metrics:
        return cls(NoOpMeterProvider().get_meter(METER_NAME))

    def record_execution(self, workflow_id: str, outcome: Outcome, duration_s: float) -> None:
        """One worker attempt. A dead-lettered attempt is a failure too, so the failure ratio
        (failure / (success + failure)) counts it; ``worker_dlq_total`` counts it once more."""
        labels = {"workflow_id": workflow_id}
        if outcome == "success":
            self._success.add(1, labels)
        else:
            self._failure.add(1, labels)
            if outcome == "dlq":
                self._dlq.add(1, labels)
        self._action_duration.record(max(0.0, float(duration_s)), labels)

    def dead_lettered(self, workflow_id: str) -> None:
        """A job was dead-lettered (counted once, by the DLQ analyzer's write that failed it); its
        failed attempts were counted by the worker."""
        self._dlq.add(1, {"workflow_id": workflow_id})

    def job_started(self, pipeline: str) -> None:
        self._jobs_started.add(1, {"pipeline": pipeline})

    def job_finished(self, pipeline: str, status: str) -> None:
        self._jobs_finished.add(1, {"pipeline": pipeline, "status": str(status)})

    def stage_finished(self, pipeline: str, stage: str, seconds: float) -> None:
        self._stage_duration.record(max(0.0, float(seconds)), {"pipeline": pipeline, "stage": stage})

    @contextmanager
    def in_flight(self, pipeline: str) -> Iterator[None]:
        """Count a job as in flight while this block runs, in this process.

        Up and down in the same process: a job starts in the webhook and finishes in the worker, so
        counting +1 at start and -1 at finish would leave each instance's series wrong forever.
        """
        labels = {"pipeline": pipeline}
        self._in_flight.add(1, labels)
        try:
            yield
        finally:
            self._in_flight.add(-1, labels)

    def stale_found(self, pipeline: str, n: int) -> None:
        if n > 0:
            self._stale_found.add(int(n), {"pipeline": pipeline})

    def cost(self, pipeline: str, kind: str, amount: float) -> None:
        # Always a float: Cloud Monitoring fixes a metric's value type from its first point.
        if amount > 0:
            self._cost.add(float(amount), {"pipeline": pipeline, "kind": kind})
