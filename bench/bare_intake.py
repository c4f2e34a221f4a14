"""The floor the intake is measured against (bench/feed.py): a functions-framework handler that
does one Firestore commit and one Pub/Sub publish, and nothing else (no auth, no validation, no
telemetry). Its one commit carries the very documents the intake's does (a job, its first event,
an idempotency key: three documents in one batch, same fields and sizes), so the comparison is of
everything around the I/O. Served by functions-framework exactly as the intake is, on the same
emulators."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

import flask
import functions_framework

from services.clients import Clients
from services.jobs.models import JobCreate
from services.jobs.repository import JobRepository
from services.settings import Settings


@cache
def _clients() -> Clients:
    return Clients(Settings())


@cache
def _intake_documents() -> tuple[dict[str, Any], dict[str, Any]]:
    """A job and its first event as the intake's commit writes them, read back once: each request
    then writes copies, paying for encoding and sending the same bytes but not for building them."""
    clients = _clients()
    repo = JobRepository(clients.firestore, clients.settings)
    job, _ = repo.create_job(
        JobCreate(
            pipeline="video",
            account_id="acc-drain",
            scenario_id="bare-sample",
            source_id="src-0",
            user_id="bench-user",
            idempotency_key=f"video:acc-drain-bare-sample-src-0:{uuid.uuid4().hex}",
            input={"videoUrl": "https://videos.example/bare-sample/0.mp4", "caption": ""},
        ),
        actor="webhook",
    )
    job_doc = repo.job_ref(job.job_id).get().to_dict() or {}
    [event] = repo.events_ref(job.job_id).get()
    return job_doc, event.to_dict() or {}


@functions_framework.http
def bare(request: flask.Request) -> tuple[flask.Response, int]:
    clients = _clients()
    job_doc, event_doc = _intake_documents()
    doc_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    jobs = clients.firestore.collection(f"{clients.settings.collection_prefix}bare")
    batch = clients.firestore.batch()
    batch.create(jobs.document(doc_id), {**job_doc, "jobId": doc_id, "createdAt": now, "updatedAt": now})
    batch.create(jobs.document(doc_id).collection("events").document("00001"), {**event_doc, "jobId": doc_id})
    batch.create(jobs.document(f"key-{doc_id}"), {"jobId": doc_id, "createdAt": now, "expireAt": now})
    batch.commit()
    topic = clients.topic_path("video-jobs")
    message_id = clients.publisher.publish(topic, doc_id.encode()).result(timeout=30)
    return flask.jsonify({"id": doc_id, "messageId": message_id}), 202
