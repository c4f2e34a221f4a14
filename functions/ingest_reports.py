"""Ingest reports (Pub/Sub push): creates and reports published by services that run elsewhere."""

import flask
import functions_framework

from services.deployment import require_deployment
from services.ingest.push import handle_ingest_push
from services.runtime import get_runtime

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("ingest_reports")


@functions_framework.http
def ingest_reports(request: flask.Request) -> flask.Response:
    return handle_ingest_push(get_runtime(), request)
