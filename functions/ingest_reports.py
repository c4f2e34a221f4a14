"""Ingest reports (Pub/Sub push): creates and reports published by services that run elsewhere."""

import flask
import functions_framework

from services.ingest.push import handle_ingest_push
from services.runtime import get_runtime


@functions_framework.http
def ingest_reports(request: flask.Request) -> flask.Response:
    return handle_ingest_push(get_runtime(), request)
