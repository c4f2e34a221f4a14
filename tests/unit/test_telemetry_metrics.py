"""Metrics: the seed 004 names at /metrics (valid for prometheus_client and promtool), and Cloud
Monitoring writes that do not grow with the number of jobs."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from google.cloud.monitoring_v3 import CreateMetricDescriptorRequest, CreateTimeSeriesRequest
from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from services.settings import Settings
from services.telemetry import Telemetry, add_metrics_route, get_metrics, metrics_response
from services.telemetry.metrics import METRIC_NAMES, Metrics, export_interval_seconds

PIPELINES = ("video", "music_clips")
STATUSES = ("succeeded", "failed", "timed_out")
# A resource given outright, so no test asks a metadata server where it runs.
LOCAL = Resource.create({"service.name": "jobtrail-test"})


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry.create(Settings(metrics_exporter="prometheus"), resource=LOCAL)
    yield telemetry
    telemetry.shutdown()


def record_everything(metrics: Metrics) -> None:
    metrics.record_execution("wf-video", "success", 0.2)
    metrics.record_execution("wf-video", "failure", 1.5)
    metrics.record_execution("wf-video", "dlq", 3.0)
    metrics.job_started("video")
    metrics.job_finished("video", "succeeded")
    metrics.stage_finished("video", "downloading", 4.2)
    with metrics.in_flight("video"):
        pass
    metrics.stale_found("video", 2)
    metrics.cost("video", "compute", 0.0012)


def families(body: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def sample(family: Any, name: str, **labels: str) -> float:
    [value] = [
        s.value
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return value


def test_metrics_text_parses_and_has_the_seed_names_with_their_labels(telemetry):
    record_everything(telemetry.metrics)
    body, content_type = telemetry.prometheus_exposition()
    assert content_type.startswith("text/plain; version=0.0.4")

    found = families(body)
    exposed = {s.name for f in found.values() for s in f.samples}
    for name in (
        "worker_success_total",
        "worker_failure_total",
        "worker_dlq_total",
        "jobs_started_total",
        "jobs_finished_total",
        "stale_jobs_found_total",
        "job_cost_total",
        "jobs_in_flight",
    ):
        assert name in exposed, name
    for histogram in ("worker_action_duration_seconds", "stage_duration_seconds"):
        assert {f"{histogram}_bucket", f"{histogram}_count", f"{histogram}_sum"} <= exposed

    # The parser names counter families without _total; the samples keep it.
    assert sample(found["worker_success"], "worker_success_total", workflow_id="wf-video") == 1
    assert sample(found["worker_failure"], "worker_failure_total", workflow_id="wf-video") == 2
    assert sample(found["worker_dlq"], "worker_dlq_total", workflow_id="wf-video") == 1
    assert (
        sample(
            found["worker_action_duration_seconds"],
            "worker_action_duration_seconds_count",
            workflow_id="wf-video",
        )
        == 3
    )
    assert sample(found["jobs_finished"], "jobs_finished_total", pipeline="video", status="succeeded") == 1
    assert sample(
        found["stage_duration_seconds"], "stage_duration_seconds_sum", pipeline="video", stage="downloading"
    ) == pytest.approx(4.2)
    assert sample(found["jobs_in_flight"], "jobs_in_flight", pipeline="video") == 0
    assert sample(found["stale_jobs_found"], "stale_jobs_found_total", pipeline="video") == 2
    # Backlog comes from Pub/Sub's own subscription metrics (num_undelivered_messages), not ours.
    assert not any(name.startswith("queue_backlog") for name in exposed)
    assert sample(found["job_cost"], "job_cost_total", pipeline="video", kind="compute") == pytest.approx(
        0.0012
    )
    assert found["worker_action_duration_seconds"].type == "histogram"
    assert found["jobs_in_flight"].type == "gauge"


def test_jobs_in_flight_counts_while_the_block_runs(telemetry):
    with telemetry.metrics.in_flight("music_clips"):
        inside = families(telemetry.prometheus_exposition()[0])
    after = families(telemetry.prometheus_exposition()[0])
    assert sample(inside["jobs_in_flight"], "jobs_in_flight", pipeline="music_clips") == 1
    assert sample(after["jobs_in_flight"], "jobs_in_flight", pipeline="music_clips") == 0


def test_promtool_accepts_the_metrics_text(telemetry, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (apt-get install prometheus)"
    record_everything(telemetry.metrics)
    body, _ = telemetry.prometheus_exposition()
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_each_telemetry_has_its_own_registry():
    first = Telemetry.create(Settings(metrics_exporter="prometheus"), resource=LOCAL)
    second = Telemetry.create(Settings(metrics_exporter="prometheus"), resource=LOCAL)
    try:
        first.metrics.job_started("video")
        assert b"jobs_started_total" in first.prometheus_exposition()[0]
        assert b"jobs_started_total" not in second.prometheus_exposition()[0]
    finally:
        first.shutdown()
        second.shutdown()


def test_the_metrics_route_serves_the_active_telemetry(telemetry):
    app = add_metrics_route(flask.Flask("t"))
    with telemetry.activated():
        get_metrics().job_started("video")
        response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert "jobs_started_total" in families(response.data)["jobs_started"].samples[0].name


def test_without_an_active_telemetry_metrics_record_into_nothing():
    get_metrics().job_started("video")
    body, _ = metrics_response()
    assert body == b""


def test_metrics_exporter_none_exposes_nothing():
    telemetry = Telemetry.create(Settings(metrics_exporter="none"), resource=LOCAL)
    try:
        telemetry.metrics.job_started("video")
        assert telemetry.prometheus_exposition()[0] == b""
    finally:
        telemetry.shutdown()


def test_the_export_interval_never_goes_below_five_seconds():
    assert export_interval_seconds(Settings(metrics_export_interval_seconds=1)) == 5
    assert export_interval_seconds(Settings(metrics_export_interval_seconds=60)) == 60


class FakeMetricServiceClient:
    """Stands in for monitoring_v3.MetricServiceClient: records each request, answers like the API."""

    def __init__(self) -> None:
        self.time_series_requests: list[CreateTimeSeriesRequest] = []
        self.descriptor_requests: list[CreateMetricDescriptorRequest] = []

    @staticmethod
    def common_project_path(project: str) -> str:
        return f"projects/{project}"

    def create_metric_descriptor(self, request: CreateMetricDescriptorRequest) -> Any:
        self.descriptor_requests.append(request)
        return request.metric_descriptor

    def create_time_series(self, request: CreateTimeSeriesRequest) -> None:
        assert len(request.time_series) <= 200, "Cloud Monitoring rejects more than 200 series per call"
        self.time_series_requests.append(request)


def run_jobs_through_cloud_monitoring(jobs: int) -> list[CreateTimeSeriesRequest]:
    """``jobs`` jobs' worth of metrics within one export interval; the writes of the one export."""
    fake = FakeMetricServiceClient()
    # 60 s: the periodic export never fires during the test; force_flush is the one export.
    settings = Settings(metrics_exporter="gcp", metrics_export_interval_seconds=60, google_cloud_project="p1")
    telemetry = Telemetry.create(settings, resource=LOCAL, monitoring_client=fake)
    try:
        metrics = telemetry.metrics
        for n in range(jobs):
            pipeline = PIPELINES[n % len(PIPELINES)]
            metrics.job_started(pipeline)
            with metrics.in_flight(pipeline):
                metrics.stage_finished(pipeline, "processing", 0.5 + n % 7)
                metrics.record_execution(f"wf-{pipeline}", "success" if n % 5 else "failure", 0.1 * (n % 9))
                metrics.cost(pipeline, "compute", 0.001)
            metrics.job_finished(pipeline, STATUSES[n % len(STATUSES)])
        assert telemetry.force_flush()
        return list(fake.time_series_requests)
    finally:
        telemetry.shutdown()


def test_cloud_monitoring_write_calls_do_not_grow_with_the_number_of_jobs():
    many = run_jobs_through_cloud_monitoring(1_000)
    few = run_jobs_through_cloud_monitoring(10)

    assert len(many) == len(few) > 0
    assert series_of(many) == series_of(few)
    assert all(len(ts.points) == 1 for request in many for ts in request.time_series)
    assert {type_ for type_, _ in series_of(many)} >= {
        "custom.googleapis.com/jobtrail/worker_success_total",
        "custom.googleapis.com/jobtrail/jobs_finished_total",
        "custom.googleapis.com/jobtrail/stage_duration_seconds",
    }


def series_of(requests: list[CreateTimeSeriesRequest]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    # opentelemetry_id is random per exporter (per instance), so it differs between the two runs.
    return sorted(
        (
            ts.metric.type,
            tuple(sorted((k, v) for k, v in ts.metric.labels.items() if k != "opentelemetry_id")),
        )
        for request in requests
        for ts in request.time_series
    )


def test_cloud_monitoring_writes_at_most_200_series_per_call():
    fake = FakeMetricServiceClient()
    settings = Settings(metrics_exporter="gcp", metrics_export_interval_seconds=60, google_cloud_project="p1")
    telemetry = Telemetry.create(settings, resource=LOCAL, monitoring_client=fake)
    try:
        for n in range(450):
            telemetry.metrics.record_execution(f"wf-{n}", "success", 0.1)
        assert telemetry.force_flush()
        sizes = [len(r.time_series) for r in fake.time_series_requests]
    finally:
        telemetry.shutdown()
    # 450 success counters + 450 duration histograms = 900 series in one export: 5 calls.
    assert sizes == [200, 200, 200, 200, 100]


def test_metric_names_list_matches_what_is_exposed(telemetry):
    record_everything(telemetry.metrics)
    assert set(families(telemetry.prometheus_exposition()[0])) == {
        name.removesuffix("_total") for name in METRIC_NAMES
    }
