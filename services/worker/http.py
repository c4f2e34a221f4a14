"""HTTP faces of the Pub/Sub push targets: the pipeline worker and the DLQ analyzer."""

from __future__ import annotations

import flask

from services.dlq import record_dead_letter
from services.http import entry_point, json_response, read_body
from services.messages import decode_envelope
from services.runtime import Runtime
from services.worker.engine import Worker

# Pub/Sub messages may be up to 10 MB; ours are tiny, but never refuse a real envelope.
MAX_PUSH_BYTES = 10 * 1024 * 1024


@entry_point("pipeline_worker")
def handle_push(rt: Runtime, request: flask.Request) -> flask.Response:
    envelope = decode_envelope(read_body(request, MAX_PUSH_BYTES))
    outcome = rt.shared(Worker).handle(envelope)
    return json_response(
        {
            "verdict": outcome.verdict,
            "reason": outcome.reason,
            "jobId": outcome.job_id,
            "executionId": outcome.execution_id,
        },
        outcome.http_status,
    )


@entry_point("dlq_analyzer")
def handle_dead_letter(rt: Runtime, request: flask.Request) -> flask.Response:
    envelope = decode_envelope(read_body(request, MAX_PUSH_BYTES))
    record = record_dead_letter(rt, envelope)
    return json_response(
        {"outcome": record.outcome, "jobId": record.job_id, "executionId": record.execution_id}, 200
    )
