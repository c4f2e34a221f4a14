"""Video source webhook -> tracked job + queued message (HTTP)."""

import flask
import functions_framework

from services.deployment import require_deployment
from services.intake import handle_webhook
from services.runtime import get_runtime

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("webhook_intake")


@functions_framework.http
def webhook_intake(request: flask.Request) -> flask.Response:
    return handle_webhook(get_runtime(), request)
