"""The JSON logger: Cloud Logging's fields, labels per request/thread, and no secret ever printed."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import flask
import pytest

from services.settings import Settings
from services.telemetry import (
    Telemetry,
    bind_job,
    bind_labels,
    configure_logging,
    get_logger,
    instrument_flask,
)
from services.telemetry.logging import JsonLogHandler

PLANTED_SETTING_SECRET = "sk-live-5f1c0ffee9d8b7a6"
PLANTED_BEARER = "ya29.a0AfH6SMBx-planted-bearer"
PLANTED_EXCEPTION_SECRET = "exc-9c2e4b7a1d-planted"


@pytest.fixture
def settings() -> Settings:
    # A unit-test Settings: no emulators, memory spans, a secret only this test knows.
    return Settings(
        google_cloud_project="proj-1",
        trace_exporter="memory",
        metrics_exporter="none",
        suno_api_key=PLANTED_SETTING_SECRET,
        log_level="DEBUG",
    )


@pytest.fixture
def telemetry(settings: Settings) -> Iterator[Telemetry]:
    telemetry = Telemetry.create(settings)
    with telemetry.activated():
        yield telemetry
    telemetry.shutdown()


@pytest.fixture
def captured(settings: Settings) -> Iterator[io.StringIO]:
    """What the JSON handler writes, for this test only; the root logger is restored after."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging(settings, stream=buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_carries_severity_message_time_trace_span_and_labels(telemetry, captured):
    log = get_logger("jobtrail.test")
    with (
        telemetry.tracer("t").start_as_current_span("stage") as span,
        bind_labels(traceId="acc-scn-src", jobId="job-1", stage="downloading", pipeline="video"),
    ):
        log.info("stage %s done", "downloading", extra={"fields": {"durationMs": 12}})
    ctx = span.get_span_context()

    [line] = lines(captured)
    assert line["severity"] == "INFO"
    assert line["message"] == "stage downloading done"
    assert line["time"].endswith("Z")
    assert line["logging.googleapis.com/trace"] == f"projects/proj-1/traces/{ctx.trace_id:032x}"
    assert line["logging.googleapis.com/spanId"] == f"{ctx.span_id:016x}"
    assert line["logging.googleapis.com/trace_sampled"] is True
    labels = line["logging.googleapis.com/labels"]
    assert {k: labels[k] for k in ("traceId", "jobId", "stage", "pipeline")} == {
        "traceId": "acc-scn-src",
        "jobId": "job-1",
        "stage": "downloading",
        "pipeline": "video",
    }
    assert line["durationMs"] == 12


def test_http_request_passed_in_extra_is_logged_and_fields_cannot_overwrite_reserved_keys(captured):
    get_logger("jobtrail.test").warning(
        "slow request",
        extra={
            "http_request": {"requestMethod": "POST", "requestUrl": "/webhook", "status": 202},
            "fields": {"severity": "DEBUG", "message": "forged"},
        },
    )
    [line] = lines(captured)
    assert line["httpRequest"] == {"requestMethod": "POST", "requestUrl": "/webhook", "status": 202}
    assert line["severity"] == "WARNING"
    assert line["message"] == "slow request"


def test_a_line_outside_any_span_has_no_trace_fields(captured):
    get_logger("jobtrail.test").info("idle")
    [line] = lines(captured)
    assert "logging.googleapis.com/trace" not in line
    assert line["logging.googleapis.com/trace_sampled"] is False


def test_labels_end_with_their_block_and_inner_blocks_add_to_outer(captured):
    log = get_logger("jobtrail.test")
    with bind_labels(traceId="a-b-c"):
        with bind_labels(stage="processing"):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = (line["logging.googleapis.com/labels"] for line in lines(captured))
    assert inner["traceId"] == "a-b-c" and inner["stage"] == "processing"
    assert outer["traceId"] == "a-b-c" and "stage" not in outer
    assert "traceId" not in after


def test_bind_job_binds_the_four_job_labels(captured):
    class FakeJob:
        trace_id, job_id, pipeline, stage = "acc-scn-src", "j9", "music_clips", "STAGE_10_REQUEST_ACCEPTED"

    with bind_job(FakeJob()):
        get_logger("jobtrail.test").info("x")
    [line] = lines(captured)
    labels = line["logging.googleapis.com/labels"]
    assert labels["traceId"] == "acc-scn-src" and labels["jobId"] == "j9"
    assert labels["pipeline"] == "music_clips" and labels["stage"] == "STAGE_10_REQUEST_ACCEPTED"


def test_labels_bound_in_one_thread_do_not_leak_into_another(captured):
    log = get_logger("jobtrail.test")
    bound = threading.Event()
    other_logged = threading.Event()

    def job_a() -> None:
        with bind_labels(traceId="acc-a-1", jobId="A"):
            bound.set()
            assert other_logged.wait(5)
            log.info("from A")

    def job_b() -> None:
        assert bound.wait(5)
        log.info("from B")
        other_logged.set()

    threads = [threading.Thread(target=job_a), threading.Thread(target=job_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    by_message = {line["message"]: line["logging.googleapis.com/labels"] for line in lines(captured)}
    assert by_message["from A"]["jobId"] == "A"
    assert "jobId" not in by_message["from B"] and "traceId" not in by_message["from B"]


def test_planted_secrets_never_reach_a_line(captured):
    log = get_logger("jobtrail.test")
    log.info("calling suno with key %s", PLANTED_SETTING_SECRET)
    log.info("request headers %s", {"Authorization": f"Bearer {PLANTED_BEARER}", "Accept": "*/*"})
    log.info("raw header line Authorization: Bearer %s", PLANTED_BEARER)
    log.info(
        "callback",
        extra={
            "fields": {"payload": {"callback_token": "cb-planted-0001", "status": "ok"}},
            "http_request": {
                "requestUrl": f"https://h/cb?token=qp-planted-0002&apiKey={PLANTED_SETTING_SECRET}"
            },
        },
    )
    try:
        raise RuntimeError(
            f"401 from suno for Authorization: Bearer {PLANTED_EXCEPTION_SECRET} (key={PLANTED_SETTING_SECRET})"
        )
    except RuntimeError:
        log.exception("suno call failed")

    text = captured.getvalue()
    for planted in (
        PLANTED_SETTING_SECRET,
        PLANTED_BEARER,
        PLANTED_EXCEPTION_SECRET,
        "cb-planted-0001",
        "qp-planted-0002",
    ):
        assert planted not in text
    assert text.count("[REDACTED]") >= 6
    parsed = lines(captured)
    assert parsed[1]["message"] == "request headers {'Authorization': '[REDACTED]', 'Accept': '*/*'}"
    assert parsed[3]["payload"] == {"callback_token": "[REDACTED]", "status": "ok"}
    assert (
        "RuntimeError: 401 from suno for Authorization: Bearer [REDACTED] (key=[REDACTED])"
        in parsed[4]["message"]
    )


def test_every_line_of_a_flask_request_carries_the_request_trace_and_its_http_request(telemetry, captured):
    app = flask.Flask("t")

    @app.post("/hook")
    def hook() -> tuple[str, int]:
        get_logger("jobtrail.test").info("received")
        return "", 202

    instrument_flask(app)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = app.test_client().post(
        f"/hook?token={PLANTED_BEARER}", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    assert response.status_code == 202
    [line] = lines(captured)
    assert line["logging.googleapis.com/trace"] == f"projects/proj-1/traces/{trace_id}"
    assert line["httpRequest"]["requestMethod"] == "POST"
    assert PLANTED_BEARER not in line["httpRequest"]["requestUrl"]


def test_configure_logging_twice_keeps_one_handler(settings):
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging(settings, stream=io.StringIO())
        configure_logging(settings, stream=io.StringIO())
        assert sum(isinstance(h, JsonLogHandler) for h in root.handlers) == 1
    finally:
        root.handlers[:] = before


def test_without_a_stream_the_handler_writes_to_the_current_stdout(capsys):
    handler = JsonLogHandler(project_id="p")
    logger = logging.getLogger("jobtrail.test.stdout")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("to stdout")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert json.loads(capsys.readouterr().out)["message"] == "to stdout"
