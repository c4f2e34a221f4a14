"""Cloud Monitoring write calls per minute, for 10 and for 1,000 jobs a minute.

    python -m bench.monitoring [--jobs 10,1000]

The telemetry's periodic reader exports every ``metrics_export_interval_seconds`` (60 s by
default) through the CloudMonitoringMetricsExporter; here its client is a fake that counts
CreateTimeSeries calls (at most 200 series each) and descriptor creations. Each run records one
export interval's worth of jobs (started, stages, executions, cost, finished) and forces the one
export, so calls per export x exports per minute = calls per minute. Labels are bounded sets, so
the count should not move with the number of jobs.
"""

from __future__ import annotations

import json
from typing import Any

import click
from opentelemetry.sdk.resources import Resource

from services.settings import Settings
from services.telemetry import Telemetry
from services.telemetry.metrics import export_interval_seconds

PIPELINES = ("video", "music_clips")
STAGES = ("downloading", "processing", "publishing")
STATUSES = ("succeeded", "failed", "timed_out", "cancelled")


class CountingMetricServiceClient:
    """Stands in for monitoring_v3.MetricServiceClient: answers like the API, counts calls."""

    def __init__(self) -> None:
        self.time_series_calls = 0
        self.series_written = 0
        self.points_written = 0
        self.descriptor_calls = 0

    @staticmethod
    def common_project_path(project: str) -> str:
        return f"projects/{project}"

    def create_metric_descriptor(self, request: Any) -> Any:
        self.descriptor_calls += 1
        return request.metric_descriptor

    def create_time_series(self, request: Any) -> None:
        self.time_series_calls += 1
        self.series_written += len(request.time_series)
        self.points_written += sum(len(ts.points) for ts in request.time_series)


def one_interval(jobs: int, settings: Settings) -> dict[str, Any]:
    client = CountingMetricServiceClient()
    telemetry = Telemetry.create(
        settings, resource=Resource.create({"service.name": "jobtrail"}), monitoring_client=client
    )
    try:
        metrics = telemetry.metrics
        for n in range(jobs):
            pipeline = PIPELINES[n % len(PIPELINES)]
            metrics.job_started(pipeline)
            with metrics.in_flight(pipeline):
                for stage in STAGES:
                    metrics.stage_finished(pipeline, stage, 0.2 + n % 7)
                metrics.record_execution(pipeline, "success" if n % 20 else "failure", 0.1 * (n % 9))
                metrics.cost(pipeline, "compute_seconds", 0.001)
            metrics.job_finished(pipeline, STATUSES[n % len(STATUSES)])
            if n % 100 == 0:
                metrics.stale_found(pipeline, 1)
        if not telemetry.force_flush():
            raise RuntimeError("the export did not finish")
    finally:
        telemetry.shutdown()
    exports_per_minute = 60 / export_interval_seconds(settings)
    return {
        "jobs_in_interval": jobs,
        "create_time_series_calls_per_export": client.time_series_calls,
        "series_per_export": client.series_written,
        "points_per_export": client.points_written,
        "create_time_series_calls_per_minute": round(client.time_series_calls * exports_per_minute, 2),
        "metric_descriptor_calls_first_export": client.descriptor_calls,
    }


def run(job_counts: list[int]) -> dict[str, Any]:
    settings = Settings(metrics_exporter="gcp", google_cloud_project="jobtrail-bench")
    return {
        "benchmark": "cloud_monitoring_writes",
        "export_interval_seconds": export_interval_seconds(settings),
        "per_instance": [one_interval(n, settings) for n in job_counts],
        "note": "per instance: each Cloud Run instance exports its own series",
    }


@click.command()
@click.option(
    "--jobs", "jobs", default="10,1000", show_default=True, help="Jobs per export interval, comma-separated."
)
def main(jobs: str) -> None:
    click.echo(json.dumps(run([int(n) for n in jobs.split(",") if n.strip()]), indent=2))


if __name__ == "__main__":
    main()
