"""Video source webhook -> tracked job + queued message (HTTP)."""

import flask
import functions_framework

from services.intake import handle_webhook
from services.runtime import get_runtime


@functions_framework.http
def webhook_intake(request: flask.Request) -> flask.Response:
    return handle_webhook(get_runtime(), request)
