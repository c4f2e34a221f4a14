"""The mission-control page at ``/``: plain HTML, CSS and JavaScript from services/api/static/.

No build step and nothing from a CDN: the page is three files the API service serves itself. It
shows nothing until the visitor gives a token (kept in sessionStorage); every number and row
comes from the API with that token, and the live updates from GET /api/stream.
"""

from __future__ import annotations

import flask

dashboard_blueprint = flask.Blueprint(
    "dashboard", __name__, static_folder="static", static_url_path="/assets/dashboard"
)

# Everything the page loads is its own; the trace and log links are plain navigations.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dashboard_blueprint.get("/")
def index() -> flask.Response:
    response = dashboard_blueprint.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@dashboard_blueprint.get("/jobs/<job_id>")
def job_page(job_id: str) -> flask.Response:
    """One job's page; alerts link here. The page loads the job itself (a job the visitor may
    not see reads as missing there), so this route hands out the same file for any id."""
    response = dashboard_blueprint.send_static_file("job.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@dashboard_blueprint.get("/dead-letters")
def dead_letters_page() -> flask.Response:
    """Dead letters by pipeline, cause and day: select, preview, replay; fix a job's input first."""
    response = dashboard_blueprint.send_static_file("dead_letters.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@dashboard_blueprint.get("/audit")
def audit_page() -> flask.Response:
    """Who did what and when: admins see every action, users their own (GET /api/audit decides)."""
    response = dashboard_blueprint.send_static_file("audit.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@dashboard_blueprint.after_request
def _page_headers(response: flask.Response) -> flask.Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
