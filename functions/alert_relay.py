"""Cloud Monitoring webhook notification -> Telegram and Slack (HTTP)."""

import flask
import functions_framework

from services.alerting.http import handle_alert
from services.alerting.relay import get_relay
from services.deployment import require_deployment

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("alert_relay")


@functions_framework.http
def alert_relay(request: flask.Request) -> flask.Response:
    return handle_alert(get_relay(), request)
