"""Every input parser, fed hostile input: only the documented, typed errors come out.

The contract at each parser: ``InvalidInput`` (a ``JobtrailError``, answered 400) where the code
maps errors itself (``decode_envelope``, ``job_message``, ``parse_model``, ``parse_callback``,
``build_job``); pydantic's ``ValidationError`` where a model is validated directly. Anything else
(TypeError, RecursionError, OverflowError...) would be a 500 at the entry point, or a crashing
delivery that Pub/Sub retries until it dead-letters.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.alerting.message import build_message
from services.alerting.models import MonitoringNotification
from services.errors import InvalidInput
from services.external.suno import SunoCallback, parse_callback
from services.http import parse_model
from services.intake import VideoWebhook
from services.jobs.models import build_job
from services.messages import JobMessage, PushEnvelope, decode_envelope
from services.music_clips.service import RunOnceRequest
from services.settings import Settings
from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.strategies import (
    JOB_MESSAGE,
    JSON_VALUES,
    VALID_CALLBACK,
    VALID_INCIDENT,
    VALID_RUN_ONCE,
    VALID_WEBHOOK,
    bodies,
    deep_nesting,
    dumps,
    mutations_of,
    push_body,
)


@fuzz_settings(300)
@given(bodies(push_body(dumps(JOB_MESSAGE))))
def test_decode_envelope_and_job_message_raise_only_invalid_input(body: bytes) -> None:
    try:
        envelope = decode_envelope(body)
    except InvalidInput:
        return
    assert isinstance(envelope, PushEnvelope) and envelope.subscription_name
    with contextlib.suppress(InvalidInput):
        assert isinstance(envelope.job_message(), JobMessage)


@fuzz_settings(300)
@given(
    st.one_of(
        mutations_of(JOB_MESSAGE).map(dumps),
        JSON_VALUES.map(dumps),
        st.binary(max_size=200),
        deep_nesting(),
    ),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)
def test_job_message_of_any_payload_raises_only_invalid_input(
    data: bytes, attributes: dict[str, str]
) -> None:
    envelope = PushEnvelope.model_validate(push_body(data, attributes=attributes))
    try:
        message = envelope.job_message()
    except InvalidInput:
        return
    assert message.job_id and message.v <= 1
    assert set(message.attributes()) >= {"jobId", "pipeline", "traceId"}


@fuzz_settings(300)
@given(st.one_of(mutations_of(push_body(b"{}")), JSON_VALUES))
def test_push_envelope_model_raises_only_validation_error(value: Any) -> None:
    with contextlib.suppress(ValidationError):
        PushEnvelope.model_validate(value)


@fuzz_settings(300)
@given(bodies(VALID_WEBHOOK))
def test_video_webhook_parses_or_is_refused_and_an_accepted_one_builds_a_job_or_400(body: bytes) -> None:
    try:
        webhook = parse_model(VideoWebhook, body)
    except InvalidInput:
        return
    # What accept_video_webhook does with it before touching Firestore.
    with contextlib.suppress(InvalidInput):
        build_job(
            pipeline="video",
            account_id=webhook.account_id,
            scenario_id=webhook.scenario_id,
            source_id=webhook.source_id,
            user_id=webhook.user_id,
            idempotency_key=f"video:{webhook.account_id}-{webhook.scenario_id}-{webhook.source_id}:{webhook.delivery_id}",
            input={"videoUrl": str(webhook.video_url), "caption": webhook.caption},
        )


@fuzz_settings(300)
@given(st.one_of(mutations_of(VALID_CALLBACK), mutations_of(VALID_CALLBACK).map(lambda b: {**b, "data": {}})))
def test_suno_callback_parser_raises_only_invalid_input(body: dict[str, Any]) -> None:
    if isinstance(body.get("data"), dict) and not body["data"]:
        body["data"] = json.loads(json.dumps(VALID_CALLBACK["data"]))  # keep some valid inner data
    with contextlib.suppress(InvalidInput):
        assert isinstance(parse_callback(body), SunoCallback)


@fuzz_settings(300)
@given(
    st.builds(
        lambda envelope, data: {**envelope, "data": data},
        mutations_of(VALID_CALLBACK),
        st.one_of(mutations_of(VALID_CALLBACK["data"]), JSON_VALUES),
    )
)
def test_suno_callback_parser_on_broken_inner_data_raises_only_invalid_input(body: dict[str, Any]) -> None:
    try:
        callback = parse_callback(body)
    except InvalidInput:
        return
    assert callback.task_id and callback.status


@fuzz_settings(200)
@given(bodies(VALID_RUN_ONCE))
def test_run_once_request_parses_or_raises_invalid_input(body: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_model(RunOnceRequest, body)


@fuzz_settings(300)
@given(
    st.one_of(
        bodies(VALID_INCIDENT),
        st.builds(
            lambda incident: dumps({**VALID_INCIDENT, "incident": incident}),
            mutations_of(VALID_INCIDENT["incident"]),
        ),
    )
)
def test_monitoring_incident_parses_or_raises_invalid_input_and_always_formats(body: bytes) -> None:
    try:
        notification = parse_model(MonitoringNotification, body)
    except InvalidInput:
        return
    assert notification.dedup_key
    # What the relay sends: formatting a parsed incident must never fail.
    message = build_message(notification.incident, Settings())
    assert message.telegram_html() and message.slack_text()
