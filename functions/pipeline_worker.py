"""Pipeline worker on Cloud Run: Pub/Sub push deliveries of video-worker and music-worker."""

import flask
import functions_framework

from services.deployment import require_deployment
from services.runtime import get_runtime
from services.worker.http import handle_push

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("pipeline_worker")


@functions_framework.http
def pipeline_worker(request: flask.Request) -> flask.Response:
    return handle_push(get_runtime(), request)
