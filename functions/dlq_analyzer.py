"""DLQ analyzer: Pub/Sub push deliveries of the *-dlq-analyzer subscriptions."""

import flask
import functions_framework

from services.deployment import require_deployment
from services.runtime import get_runtime
from services.worker.http import handle_dead_letter

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("dlq_analyzer")


@functions_framework.http
def dlq_analyzer(request: flask.Request) -> flask.Response:
    return handle_dead_letter(get_runtime(), request)
