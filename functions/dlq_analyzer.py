"""DLQ analyzer: Pub/Sub push deliveries of the *-dlq-analyzer subscriptions."""

import flask
import functions_framework

from services.runtime import get_runtime
from services.worker.http import handle_dead_letter


@functions_framework.http
def dlq_analyzer(request: flask.Request) -> flask.Response:
    return handle_dead_letter(get_runtime(), request)
