"""Pipeline worker on Cloud Run: Pub/Sub push deliveries of video-worker and music-worker."""

import flask
import functions_framework

from services.runtime import get_runtime
from services.worker.http import handle_push


@functions_framework.http
def pipeline_worker(request: flask.Request) -> flask.Response:
    return handle_push(get_runtime(), request)
