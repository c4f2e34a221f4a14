"""The floor the intake is measured against (bench/feed.py): a functions-framework handler that
does one Firestore commit and one Pub/Sub publish, and nothing else (no auth, no validation, no
telemetry). Served by functions-framework exactly as the intake is, on the same emulators."""

from __future__ import annotations

import uuid
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
    clients.firestore.collection(f"{clients.settings.collection_prefix}bare").document(doc_id).create(
        {"body": request.get_data(as_text=True)}
    )
    topic = clients.topic_path("video-jobs")
    message_id = clients.publisher.publish(topic, doc_id.encode()).result(timeout=30)
    return flask.jsonify({"id": doc_id, "messageId": message_id}), 202
