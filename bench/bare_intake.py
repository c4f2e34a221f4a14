"""The floor the intake is measured against (bench/feed.py): a functions-framework handler that
does one Firestore commit and one Pub/Sub publish, and nothing else (no auth, no validation, no
telemetry). Its one commit carries what the intake's does (a job, its first event, an idempotency
key: three documents in one batch), so the comparison is of everything around the I/O. Served by
functions-framework exactly as the intake is, on the same emulators."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import cache

import flask
import functions_framework

from services.clients import Clients
from services.settings import Settings


@cache
def _clients() -> Clients:
    return Clients(Settings())


@functions_framework.http
def bare(request: flask.Request) -> flask.Response:
    clients = _clients()
    doc_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    jobs = clients.firestore.collection(f"{clients.settings.collection_prefix}bare")
    batch = clients.firestore.batch()
    batch.create(jobs.document(doc_id), {"body": request.get_data(as_text=True), "createdAt": now})
    batch.create(jobs.document(doc_id).collection("events").document("00001"), {"at": now, "seq": 1})
    batch.create(jobs.document(f"key-{doc_id}"), {"jobId": doc_id, "createdAt": now})
    batch.commit()
    topic = clients.topic_path("video-jobs")
    message_id = clients.publisher.publish(topic, doc_id.encode()).result(timeout=30)
    return flask.jsonify({"id": doc_id, "messageId": message_id}), 202
