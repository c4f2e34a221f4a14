"""jobtrail_client: what ``Tracker`` sends, in which order and trace, and that nothing about
jobtrail (down, refusing, slow, a broken transport) ever raises into business code or loses a
report while the buffer has room."""

from __future__ import annotations

import logging
import threading
from typing import Any

import flask
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devtools.local.serve import BackgroundServer
from jobtrail_client import HttpTransport, ReporterKey, Tracker
from jobtrail_client.transport import Item, Outcome, Sent
from tests.helpers import wait_for


class FakeTransport:
    """Answers from a script (then DELIVERED), recording every attempt."""

    def __init__(self, script: list[Outcome | Exception] | None = None) -> None:
        self.script = list(script or [])
        self.attempts: list[Item] = []
        self.delivered: list[Item] = []
        self.lock = threading.Lock()

    def send(self, item: Item) -> Sent:
        with self.lock:
            self.attempts.append(item)
            step = self.script.pop(0) if self.script else Outcome.DELIVERED
        if isinstance(step, Exception):
            raise step
        if step is Outcome.DELIVERED:
            with self.lock:
                self.delivered.append(item)
            return Sent(step, "200", {"jobId": "job_1", "traceId": "a-s-k"} if item.kind == "create" else {})
        return Sent(step, "409 ILLEGAL_TRANSITION: no" if step is Outcome.REFUSED else "ConnectionError")

    def kinds(self) -> list[str]:
        return [i.body.get("type", i.kind) if i.kind == "report" else "create" for i in self.delivered]


def tracker(transport: Any, **kwargs: Any) -> Tracker:
    options: dict[str, Any] = {
        "pipeline": "clip_render",
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        **kwargs,
    }
    return Tracker(transport, **options)


def start(t: Tracker, key: str = "k1"):
    return t.start_job(key, account_id="a", scenario_id="s", source_id=key, user_id="u")


class RenderCrashed(Exception):
    code = "RENDER_CRASHED"


def test_a_stage_block_reports_start_heartbeats_and_done_in_its_own_span():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    transport = FakeTransport()
    t = tracker(transport, heartbeat_seconds=0.02, tracer_provider=provider)
    job = start(t)
    with t.stage(job, "rendering", done="rendered"):
        wait_for(lambda: "heartbeat" in transport.kinds(), timeout=10, what="a heartbeat")
    assert t.flush(10)
    kinds = transport.kinds()
    assert kinds[:2] == ["create", "stage"] and kinds[-1] == "stage" and set(kinds[2:-1]) == {"heartbeat"}
    first, last = transport.delivered[1].body, transport.delivered[-1].body
    assert (first["stage"], last["stage"]) == ("rendering", "rendered")
    assert first["job"] == {"pipeline": "clip_render", "idempotencyKey": "k1"}
    assert last["usage"]["compute_seconds"] >= 0
    (span,) = exporter.get_finished_spans()
    assert span.name == "stage rendering"
    trace_id = f"{span.context.trace_id:032x}"
    for item in transport.delivered[1:]:
        assert trace_id in item.trace_headers["traceparent"]
    assert job.job_id == "job_1" and job.trace_id == "a-s-k"
    t.close()


def test_a_failing_block_reports_failed_and_raises_the_business_error_unchanged():
    transport = FakeTransport()
    t = tracker(transport)
    job = start(t)
    with pytest.raises(RenderCrashed, match="codec exploded"), t.stage(job, "rendering", done="rendered"):
        raise RenderCrashed("codec exploded")
    with pytest.raises(ZeroDivisionError), t.stage(job, "uploading"):
        _ = 1 / 0
    assert t.flush(10)
    failed = [i.body for i in transport.delivered if i.body.get("type") == "failed"]
    assert [(f["errorCode"], f["message"]) for f in failed] == [
        ("RENDER_CRASHED", "codec exploded"),
        ("ZeroDivisionError", "division by zero"),
    ]
    assert "rendered" not in [i.body.get("stage") for i in transport.delivered]
    t.close()


def test_while_jobtrail_is_unreachable_reports_wait_in_order_and_none_is_lost(caplog):
    outage: list[Outcome | Exception] = [Outcome.RETRY] * 8 + [ConnectionError("transport bug")] * 2
    transport = FakeTransport(outage)
    t = tracker(transport)
    with caplog.at_level(logging.WARNING, logger="jobtrail_client"):
        job = start(t)
        for stage in ("rendering", "rendered", "uploading"):
            t.reached(job, stage)
        t.succeeded(job, {"url": "gs://x"})
        assert t.flush(30)
    assert transport.kinds() == ["create", "stage", "stage", "stage", "succeeded"]
    assert [i.body.get("stage") for i in transport.delivered[1:4]] == ["rendering", "rendered", "uploading"]
    assert t.stats.retries == 10 and t.stats.delivered == 5 and t.stats.dropped == 0
    assert "jobtrail unreachable" in caplog.text and "reachable again" in caplog.text
    t.close()


def test_the_buffer_is_bounded_and_a_full_one_drops_with_a_warning_never_an_exception(caplog):
    transport = FakeTransport([Outcome.RETRY] * 10_000)
    t = tracker(transport, buffer_size=5, backoff_initial_seconds=5, backoff_max_seconds=5)
    with caplog.at_level(logging.WARNING, logger="jobtrail_client"):
        job = start(t)
        for i in range(10):
            t.progress(job, f"step {i}")
    assert t.pending() == 5 and t.stats.dropped == 6
    assert "buffer full" in caplog.text
    assert t.close(timeout=0.1) is False


def test_a_refused_report_is_dropped_and_logged_and_delivery_goes_on(caplog):
    transport = FakeTransport([Outcome.DELIVERED, Outcome.REFUSED])
    t = tracker(transport)
    with caplog.at_level(logging.WARNING, logger="jobtrail_client"):
        job = start(t)
        t.reached(job, "rendered")
        t.reached(job, "uploading")
        assert t.flush(10)
    assert transport.kinds() == ["create", "stage"] and transport.delivered[1].body["stage"] == "uploading"
    assert t.stats.refused == 1 and "refused" in caplog.text
    t.close()


def test_queued_heartbeats_of_one_job_collapse_into_one():
    transport = FakeTransport([Outcome.RETRY] * 3)
    t = tracker(transport, backoff_initial_seconds=0.2, backoff_max_seconds=0.2)
    job = start(t)
    for _ in range(50):
        t.heartbeat(job)
    assert t.flush(10)
    assert transport.kinds() == ["create", "heartbeat"]
    t.close()


# ---- HTTP transport ------------------------------------------------------------------------------
@pytest.fixture
def ingest_double():
    """An ingest endpoint on loopback answering with the status the test sets."""
    answers: list[int] = []
    seen: list[dict[str, Any]] = []
    app = flask.Flask("ingest-double")

    @app.post("/api/ingest/<kind>")
    def ingest(kind: str):
        seen.append(
            {"kind": kind, "key": flask.request.headers.get("X-Reporter-Key"), "body": flask.request.json}
        )
        status = answers.pop(0) if answers else 200
        return {"jobId": "job_9", "error": "X", "message": "m"}, status

    with BackgroundServer(app) as server:
        yield server.url, answers, seen


def test_http_transport_sends_the_key_and_sorts_answers_into_delivered_refused_retry(ingest_double):
    url, answers, seen = ingest_double
    transport = HttpTransport(url, ReporterKey("rk_secret"), timeout_seconds=2)
    item = Item("report", {"type": "heartbeat"}, {})
    answers.extend([201, 409, 400, 401, 403, 404, 413, 429, 500, 503])
    outcomes = [transport.send(item).outcome for _ in range(10)]
    assert outcomes == [Outcome.DELIVERED] + [Outcome.REFUSED] * 6 + [Outcome.RETRY] * 3
    assert seen[0] == {"kind": "reports", "key": "rk_secret", "body": {"type": "heartbeat"}}
    assert "rk_secret" not in repr(transport.credentials)
    too_big = transport.send(Item("create", {"input": "x" * 70_000}, {}))
    assert too_big.outcome is Outcome.REFUSED and len(seen) == 10
    transport.close()


def test_http_transport_to_nowhere_is_a_retry_not_an_exception():
    with BackgroundServer(flask.Flask("gone")) as server:
        url = server.url
    sent = HttpTransport(url, ReporterKey("k"), timeout_seconds=1).send(Item("report", {}, {}))
    assert sent.outcome is Outcome.RETRY
