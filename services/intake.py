"""Webhook intake: a signed delivery from the video source becomes a tracked, queued job."""

from __future__ import annotations

import hashlib
import hmac
import logging

import flask
from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from pydantic.alias_generators import to_camel

from services.errors import InvalidSignature
from services.http import entry_point, json_response, parse_model, read_body
from services.jobs.models import Job, build_job
from services.pipelines.registry import get_pipeline
from services.publishing import publish_job
from services.runtime import Runtime
from services.telemetry import bind_labels, current_trace_id_hex, get_metrics

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Jobtrail-Signature"


class VideoWebhook(BaseModel):
    """Version 1 of the video source's webhook body."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    v: int = Field(1, ge=1, le=1)
    account_id: str
    scenario_id: str
    source_id: str
    user_id: str
    # The source's id for this delivery: its retries reuse it, so they map to the same job.
    delivery_id: str = Field(min_length=1, max_length=200)
    video_url: HttpUrl
    caption: str = Field("", max_length=2200)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header is attacker input.
    if not header or not hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "replace")):
        raise InvalidSignature(f"missing or wrong {SIGNATURE_HEADER} (HMAC-SHA256 of the body)")


def accept_video_webhook(rt: Runtime, webhook: VideoWebhook) -> tuple[Job, bool]:
    """Create (or find) the job and make sure its start message is queued.

    The happy path is one commit (job, first event, idempotency key) and one publish: nothing
    records the publish, so the answer waits for no third write. A duplicate delivery cannot tell
    "published, still queued" from "the first request died between commit and publish", so it
    republishes only a job that no worker has taken and that is older than the first request's
    publish could take; a second message for a job is harmless (the worker takes each stage with
    a precondition, as it must for Pub/Sub's own redeliveries).
    """
    new = build_job(
        pipeline="video",
        account_id=webhook.account_id,
        scenario_id=webhook.scenario_id,
        source_id=webhook.source_id,
        user_id=webhook.user_id,
        idempotency_key=f"video:{webhook.account_id}-{webhook.scenario_id}-{webhook.source_id}:{webhook.delivery_id}",
        input={"videoUrl": str(webhook.video_url), "caption": webhook.caption},
    )
    job, created = rt.repo.create_job(new, actor="webhook", otel_trace_id=current_trace_id_hex())
    if created:
        get_metrics().job_started(job.pipeline)
        publish_job(rt, job)
    elif _publish_may_be_lost(rt, job):
        log.warning("job %s was never taken; republishing its start message", job.job_id)
        publish_job(rt, job)
    return job, created


def _publish_may_be_lost(rt: Runtime, job: Job) -> bool:
    never_taken = job.stage == get_pipeline(job.pipeline).initial.name and job.queued_message_id is None
    age = (rt.repo.clock() - job.created_at).total_seconds()
    return never_taken and age > rt.settings.intake_republish_after_seconds


@entry_point("webhook_intake")
def handle_webhook(rt: Runtime, request: flask.Request) -> flask.Response:
    body = read_body(request, rt.settings.max_body_bytes)
    verify_signature(
        rt.settings.webhook_hmac_secret.get_secret_value(), body, request.headers.get(SIGNATURE_HEADER)
    )
    webhook = parse_model(VideoWebhook, body)
    with bind_labels(traceId=f"{webhook.account_id}-{webhook.scenario_id}-{webhook.source_id}"):
        job, created = accept_video_webhook(rt, webhook)
        log.info(
            "webhook %s accepted as job %s%s",
            webhook.delivery_id,
            job.job_id,
            "" if created else " (duplicate delivery)",
            extra={"fields": {"jobId": job.job_id}},
        )
    return json_response(
        {
            "success": True,
            "ok": True,
            "jobId": job.job_id,
            "traceId": job.trace_id,
            "stage": job.stage,
            "duplicate": not created,
        },
        202,
    )
