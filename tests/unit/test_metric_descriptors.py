"""infra/metrics.yaml, which Terraform declares the custom metric descriptors from, is exactly what
the OpenTelemetry exporter creates when the services first write each metric: kind, value type,
unit and labels. Otherwise an alert policy could not be created before a metric's first point, or
the declared descriptor would refuse the exporter's points."""

from __future__ import annotations

from pathlib import Path

import yaml
from google.api.metric_pb2 import MetricDescriptor

from services.settings import Settings
from services.telemetry import Telemetry
from services.telemetry.metrics import CLOUD_MONITORING_PREFIX, METRIC_NAMES
from tests.unit.test_telemetry_metrics import LOCAL, FakeMetricServiceClient

CATALOGUE = yaml.safe_load((Path(__file__).resolve().parents[2] / "infra" / "metrics.yaml").read_text())


def exported_descriptors() -> dict[str, MetricDescriptor]:
    """Every instrument recorded once, exported once through the real exporter."""
    fake = FakeMetricServiceClient()
    settings = Settings(metrics_exporter="gcp", metrics_export_interval_seconds=60, google_cloud_project="p1")
    telemetry = Telemetry.create(settings, resource=LOCAL, monitoring_client=fake)
    try:
        metrics = telemetry.metrics
        metrics.record_execution("video", "dlq", 0.3)
        metrics.record_execution("video", "success", 0.2)
        metrics.job_started("video")
        metrics.job_finished("video", "published")
        metrics.stage_finished("video", "processing", 1.5)
        with metrics.in_flight("video"):
            pass
        metrics.stale_found("music_clips", 2)
        metrics.cost("video", "compute", 0.01)
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()
    return {
        r.metric_descriptor.type.removeprefix(CLOUD_MONITORING_PREFIX + "/"): r.metric_descriptor
        for r in fake.descriptor_requests
    }


def test_the_catalogue_declares_every_metric_the_code_writes() -> None:
    assert sorted(CATALOGUE) == sorted(METRIC_NAMES)


def test_each_declared_descriptor_is_what_the_exporter_creates() -> None:
    exported = exported_descriptors()
    assert sorted(exported) == sorted(CATALOGUE)
    for name, declared in CATALOGUE.items():
        written = exported[name]
        assert MetricDescriptor.MetricKind.Name(written.metric_kind) == declared["kind"], name
        assert MetricDescriptor.ValueType.Name(written.value_type) == declared["value_type"], name
        assert written.unit == declared["unit"], name
        assert sorted(label.key for label in written.labels) == sorted(
            [*declared["labels"], "opentelemetry_id"]
        ), name
