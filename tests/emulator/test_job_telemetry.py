"""A real job through intake -> Pub/Sub -> worker: its log lines and spans tell one story."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from services.intake import SIGNATURE_HEADER, sign
from services.settings import Settings
from services.telemetry import Telemetry, configure_logging, instrument_requests
from tests.emulator.test_video_pipeline import finished, webhook_body
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator

PLANTED = ("planted-bearer-7f3a9c", "planted-query-token-51be", "planted-api-key-d00d")


@pytest.fixture
def pipeline_settings(pipeline_settings: Settings) -> Settings:
    """As deployed outside Google Cloud: traces kept in memory for the test, metrics for Prometheus."""
    return pipeline_settings.model_copy(update={"trace_exporter": "memory", "metrics_exporter": "prometheus"})


@pytest.fixture
def telemetry(pipeline_settings: Settings) -> Iterator[Telemetry]:
    telemetry = Telemetry.create(pipeline_settings)
    instrument_requests()  # what setup_telemetry does once per process in production
    with telemetry.activated():
        yield telemetry
    telemetry.shutdown()


@pytest.fixture
def log_lines(pipeline_settings: Settings) -> Iterator[io.StringIO]:
    """Every JSON line the process writes while the test runs (the stack runs in this process)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging(pipeline_settings, stream=buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def run_one_job(stack, world) -> str:
    # A slow first try of Instagram makes the job retry, so more than one delivery logs for it.
    world.configure(instagram={"fail_next_n": 3})
    body = webhook_body()
    secret = stack.rt.settings.webhook_hmac_secret.get_secret_value()
    response = requests.post(
        f"{stack.intake_url}/?token={PLANTED[1]}",
        data=body,
        timeout=10,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body),
            "Authorization": f"Bearer {PLANTED[0]}",
            "X-Api-Key": PLANTED[2],
        },
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    wait_for(finished(stack.rt.repo, job_id), timeout=60, what="job to finish")
    return job_id


def test_every_line_of_a_job_carries_its_trace_and_no_secret(stack, world, telemetry, log_lines):
    job_id = run_one_job(stack, world)
    job = stack.rt.repo.get_job(job_id)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.strip()]
    of_job = [line for line in lines if line.get("logging.googleapis.com/labels", {}).get("jobId") == job_id]
    # intake, each worker attempt and each stage logged about this job
    assert len(of_job) >= 6, [line["message"] for line in lines]
    assert {line["logging.googleapis.com/labels"]["traceId"] for line in of_job} == {job.trace_id}
    traces = {line.get("logging.googleapis.com/trace") for line in of_job}
    assert traces == {f"projects/{stack.rt.settings.google_cloud_project}/traces/{job.otel_trace_id}"}
    text = log_lines.getvalue()
    for secret in (*PLANTED, stack.rt.settings.webhook_hmac_secret.get_secret_value()):
        assert secret not in text


def test_webhook_and_worker_stages_are_one_trace_across_pubsub(stack, world, telemetry):
    job_id = run_one_job(stack, world)
    job = stack.rt.repo.get_job(job_id)

    def of_trace() -> list[Any] | None:
        spans = telemetry.span_exporter.get_finished_spans()
        mine = [s for s in spans if f"{s.context.trace_id:032x}" == job.otel_trace_id]
        # The finishing attempt's span ends after the job's last stage is committed.
        return mine if sum(s.name.startswith("worker ") for s in mine) == 2 else None

    # Two worker spans: the failed attempt and the retry, and no more.
    spans = wait_for(of_trace, timeout=10, what="both worker attempts' spans to end")
    assert spans is not None  # wait_for returns only a truthy probe
    names = [s.name for s in spans]
    assert "POST webhook_intake" in names
    assert any(n.startswith("publish ") for n in names)
    for stage in ("stage download", "stage process", "stage publish"):
        assert stage in names, names
    # the outside calls are children in the same trace too (requests instrumentation)
    assert any(s.name.startswith("POST") and s.name != "POST webhook_intake" for s in spans), names


def test_worker_serves_prometheus_metrics_of_its_attempts(stack, world, telemetry):
    run_one_job(stack, world)

    def scrape() -> dict[tuple[str, str | None], float] | None:
        response = requests.get(f"{stack.worker_url}/metrics", timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
        families = text_string_to_metric_families(response.text)
        samples = {(s.name, s.labels.get("workflow_id")): s.value for f in families for s in f.samples}
        # The attempt is counted after its execution record is closed, which is after the job's
        # last stage was committed: the job can read finished a moment before the count.
        return samples if ("worker_success_total", "video") in samples else None

    samples = wait_for(scrape, timeout=10, what="the finishing attempt to be counted")
    assert samples is not None  # wait_for returns only a truthy probe
    assert samples[("worker_success_total", "video")] == 1
    assert samples[("worker_failure_total", "video")] == 1
    assert samples[("worker_action_duration_seconds_count", "video")] == 2
