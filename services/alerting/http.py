"""The relay's HTTP surface: token check, body -> notification, report -> status.

Cloud Monitoring's ``webhook_tokenauth`` channel sends the token as ``?auth_token=``; a Bearer
header is accepted too (manual tests, other senders). Both are compared in constant time.
"""

from __future__ import annotations

import hmac

import flask
from pydantic import SecretStr

from services.alerting.models import MonitoringNotification
from services.alerting.relay import AlertRelay
from services.errors import Unauthorized
from services.http import entry_point, json_response, parse_model, read_body

TOKEN_QUERY_PARAM = "auth_token"  # noqa: S105 (the parameter's name, not a secret)


def presented_token(request: flask.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.args.get(TOKEN_QUERY_PARAM) or None


def check_token(request: flask.Request, expected: SecretStr) -> None:
    presented = presented_token(request)
    if presented is None or not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        raise Unauthorized(f"missing or wrong relay token (Bearer header or ?{TOKEN_QUERY_PARAM}=)")


@entry_point("alert_relay")
def handle_alert(relay: AlertRelay, request: flask.Request) -> flask.Response:
    check_token(request, relay.settings.alert_relay_token)
    notification = parse_model(MonitoringNotification, read_body(request, relay.settings.max_body_bytes))
    report = relay.relay(notification)
    # 502 tells the sender (and whoever reads the logs) that a chat service did not get it.
    return json_response(report.to_body(), 502 if report.failed else 200)


def create_app(relay: AlertRelay) -> flask.Flask:
    """The relay as a Flask app (tests and the local stack); every path goes to the handler."""
    app = flask.Flask("alert_relay")

    @app.route("/", defaults={"path": ""}, methods=["POST"])
    @app.route("/<path:path>", methods=["POST"])
    def relay_alert(path: str) -> flask.Response:
        return handle_alert(relay, flask.request)

    return app
