"""The ingest-reports subscription's push target: the same creates and reports as the HTTP API,
for services that would rather publish than call HTTP.

Answers: 2xx acks (applied, a duplicate, or a stale report the state machine refused with 409,
which no redelivery could change); a report for a job not created yet (its create is still on
the way) and any infrastructure failure nack for a redelivery; a message that can never apply
(malformed, unknown pipeline or stage, a pipeline or stage not the sender's) nacks too, so after
max_delivery_attempts it lands in ingest-reports-dlq where a person sees it, and nothing is written.
"""

from __future__ import annotations

import flask
from pydantic import ValidationError

from services.auth.reporters import Reporter
from services.errors import InvalidInput, TransitionConflict
from services.http import entry_point, json_response, read_body
from services.ingest import service
from services.ingest.models import IngestMessage
from services.messages import decode_envelope
from services.runtime import Runtime
from services.telemetry import caller_trace_id_hex, consumer_span
from services.telemetry.logging import get_logger

log = get_logger(__name__)
MAX_PUSH_BYTES = 10 * 1024 * 1024
# The same limit as the HTTP API: a message is one create or one report.
MAX_MESSAGE_BYTES = 64 * 1024


def decode_ingest_message(payload: dict[str, object], message_id: str) -> IngestMessage:
    try:
        return IngestMessage.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput(
            f"message {message_id} is not an ingest message",
            problems=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from exc


@entry_point("ingest_reports")
def handle_ingest_push(rt: Runtime, request: flask.Request) -> flask.Response:
    envelope = decode_envelope(read_body(request, MAX_PUSH_BYTES))
    if len(envelope.message.data) > MAX_MESSAGE_BYTES * 4 // 3 + 4:  # base64 of 64 KB
        raise InvalidInput(f"message {envelope.message.message_id} is over {MAX_MESSAGE_BYTES} bytes")
    message = decode_ingest_message(envelope.payload(), envelope.message.message_id)
    reporter = Reporter(message.service)
    with consumer_span("ingest report", envelope.message.attributes):
        if message.create is not None:
            trace_id = caller_trace_id_hex(envelope.message.attributes)
            job, created = service.create_job(rt, reporter, message.create, otel_trace_id=trace_id)
            return json_response({"jobId": job.job_id, "created": created}, 200)
        assert message.report is not None  # model-validated: exactly one
        try:
            reported = service.apply_report(rt, reporter, message.report)
        except TransitionConflict as exc:
            log.warning("report from %s refused, acked: %s", reporter.service, exc.message)
            return json_response({**exc.to_body(), "acked": True}, 200)
        return json_response({"jobId": reported.job.job_id, "applied": reported.applied}, 200)
