"""The API service's Flask app, built once per instance by ``create_app(rt)``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import flask
from werkzeug.exceptions import HTTPException

from services.api import (
    admin,
    audit,
    bulk,
    dead_letters,
    dlq,
    export,
    jobs,
    logs,
    openapi,
    session,
    stream_tickets,
    summary,
)
from services.api.dashboard import dashboard_blueprint
from services.api.job_logs import job_logs_blueprint
from services.api.routing import RUNTIME_EXTENSION
from services.api.stream import stream_blueprint
from services.auth import SETTINGS_EXTENSION, check_auth_settings
from services.auth.reporters import check_reporter_settings
from services.errors import JobtrailError, Unauthorized
from services.http import HEALTH_PATH, error_response, json_response, outage_response
from services.ingest import api as ingest_api
from services.music_clips.api import music_clips_blueprint
from services.runtime import Runtime, get_runtime

log = logging.getLogger("jobtrail.api")

CORE_BLUEPRINTS = (
    bulk.bp,
    jobs.bp,
    export.bp,
    logs.bp,
    summary.bp,
    admin.bp,
    dlq.bp,
    dead_letters.bp,
    audit.bp,
    stream_tickets.bp,
    session.bp,
    music_clips_blueprint,
    ingest_api.bp,
    openapi.bp,
)
# Blueprints that need the runtime in their options: the live stream (/api/stream), a job's live
# log lines (/api/jobs/<jobId>/logs/stream) and the pages (/, /jobs/<jobId>, /dead-letters).
RUNTIME_BLUEPRINTS = (stream_blueprint, job_logs_blueprint, dashboard_blueprint)


def create_app(rt: Runtime | None = None, *, extra_blueprints: Sequence[flask.Blueprint] = ()) -> flask.Flask:
    """The API app on ``rt`` (default: this instance's runtime). Refuses an auth configuration that
    could verify nothing."""
    rt = rt or get_runtime()
    check_auth_settings(rt.settings)
    check_reporter_settings(rt.settings)
    app = flask.Flask("jobtrail_api", static_folder=None)
    app.extensions[RUNTIME_EXTENSION] = rt
    app.extensions[SETTINGS_EXTENSION] = rt.settings
    for core in CORE_BLUEPRINTS:
        app.register_blueprint(core)
    for blueprint in (*RUNTIME_BLUEPRINTS, *extra_blueprints):
        app.register_blueprint(blueprint, runtime=rt)
    _register_error_handlers(app)
    _register_access_log(app)

    from services.telemetry import add_metrics_route, instrument_flask

    if rt.settings.metrics_exporter == "prometheus":
        add_metrics_route(app)  # as every other entry point (services/http.py)
    instrument_flask(app)
    return app


def http_error_response(exc: HTTPException) -> flask.Response:
    """Werkzeug's own errors (no route, wrong method) as the JSON body every other error has."""
    code = (exc.name or "error").upper().replace(" ", "_")
    body = {"success": False, "ok": False, "error": code, "message": exc.description or exc.name}
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return json_response(body, exc.code or 500, headers)


def _register_error_handlers(app: flask.Flask) -> None:
    @app.errorhandler(JobtrailError)
    def typed_error(exc: JobtrailError) -> flask.Response:
        response = error_response(exc)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="jobtrail"'
        return response

    app.register_error_handler(HTTPException, http_error_response)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> flask.Response:
        outage = outage_response(exc)
        if outage is not None:
            return outage
        log.exception("unhandled error in %s %s", flask.request.method, flask.request.path)
        return json_response(
            {
                "success": False,
                "ok": False,
                "error": "INTERNAL",
                "message": "internal error; it has been logged",
            },
            500,
        )


def _register_access_log(app: flask.Flask) -> None:
    @app.before_request
    def start_clock() -> None:
        flask.g.jobtrail_started = time.perf_counter()

    @app.after_request
    def access_log(response: flask.Response) -> flask.Response:
        if flask.request.path == HEALTH_PATH:
            return response  # Cloud Run's probes: a line each would drown the log.
        # The route, not the URL: query strings and ids stay out of the line.
        rule = flask.request.url_rule.rule if flask.request.url_rule else "<unrouted>"
        latency = time.perf_counter() - flask.g.get("jobtrail_started", time.perf_counter())
        log.log(
            logging.WARNING if response.status_code >= 500 else logging.INFO,
            "%s %s -> %s",
            flask.request.method,
            rule,
            response.status_code,
            extra={
                "http_request": {
                    "requestMethod": flask.request.method,
                    "requestUrl": rule,
                    "status": response.status_code,
                    "latency": f"{latency:.3f}s",
                }
            },
        )
        return response
