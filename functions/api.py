"""API service (HTTP): status, search, execution logs, summary, control plane, audit, OpenAPI."""

import threading

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from services.api import create_app
from services.api.app import http_error_response
from services.deployment import require_deployment
from services.runtime import get_runtime

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("api")

_app: flask.Flask | None = None
_app_lock = threading.Lock()


def _instance_app() -> flask.Flask:
    """The app, built on the first request of this instance (never at import time)."""
    global _app
    with _app_lock:
        if _app is None:
            from services.telemetry import setup_telemetry

            rt = get_runtime()
            setup_telemetry(rt.settings)
            _app = create_app(rt)
        return _app


# The framework routes "/<path:path>" before our app sees anything; a path that rule cannot match
# (an id with a newline) would get Flask's HTML 404 page instead of our JSON body. The framework
# runs this module inside its own app's context, so that is the app to tell.
if flask.has_app_context():
    flask.current_app.register_error_handler(HTTPException, http_error_response)


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    app = _instance_app()
    with app.request_context(request.environ):
        return app.full_dispatch_request()
