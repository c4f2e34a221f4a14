"""Music Clips' HTTP routes, as a blueprint the API service registers with one line:

    app.register_blueprint(music_clips_blueprint, runtime=rt)

    POST /api/music-clips/channels/<channelId>/runOnce   202 {jobId, channelId, stage, createdAt, message}
    GET  /api/music-clips/jobs/<jobId>                    200 the job view (seed 002); 404 JOB_NOT_FOUND
    POST /api/webhooks/suno/music                         Suno's callback (see callback.py)

The first two need the API's credentials (services/auth: Bearer JWT or X-API-Key), so the blueprint
serves only inside the app services/api ``create_app`` builds. A run is the caller's; a body
``userId`` naming someone else is refused (403) unless the caller is an admin. A job is shown to
its owner and to admins; to anyone else it is missing (404), so no answer tells that it exists.
Suno's callback carries its own token in the URL instead.

Every answer carries a requestId (body and X-Request-Id header), errors included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import flask
from flask import Blueprint, current_app
from flask.blueprints import BlueprintSetupState

from services.auth import request_principal, visible
from services.errors import Forbidden, JobNotFound, JobtrailError, Unauthorized
from services.http import json_response, parse_model, read_body
from services.jobs.repository import new_request_id, utcnow
from services.music_clips.callback import handle_suno_callback
from services.music_clips.config import CALLBACK_PATH
from services.music_clips.service import (
    Accepted,
    RunOnceRequest,
    get_music_job,
    job_view,
    run_once,
)
from services.runtime import Runtime, get_runtime

RUNTIME_EXTENSION = "jobtrail.runtime"
REQUEST_ID_HEADER = "X-Request-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WWW_AUTHENTICATE = 'Bearer realm="jobtrail"'
_JOB_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$")

music_clips_blueprint = Blueprint("music_clips", __name__)


@music_clips_blueprint.record_once
def _remember_runtime(state: BlueprintSetupState) -> None:
    runtime = state.options.get("runtime")
    if runtime is not None:
        state.app.extensions.setdefault(RUNTIME_EXTENSION, runtime)


def _runtime() -> Runtime:
    runtime = current_app.extensions.get(RUNTIME_EXTENSION)
    return runtime if isinstance(runtime, Runtime) else get_runtime()


def _with_request_id(view: Callable[..., flask.Response]) -> Callable[..., flask.Response]:
    @wraps(view)
    def wrapped(**kwargs: Any) -> flask.Response:
        rt = _runtime()
        request_id = new_request_id(utcnow())
        try:
            response = view(rt, request_id, **kwargs)
        except JobtrailError as exc:
            response = json_response({**exc.to_body(), "requestId": request_id}, exc.http_status)
            if isinstance(exc, Unauthorized):
                response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return wrapped


@music_clips_blueprint.post("/api/music-clips/channels/<channel_id>/runOnce")
@_with_request_id
def run_once_route(rt: Runtime, request_id: str, channel_id: str) -> flask.Response:
    principal = request_principal(flask.request)
    raw = read_body(flask.request, rt.settings.max_body_bytes)
    body = parse_model(RunOnceRequest, raw) if raw.strip() else RunOnceRequest()
    # Seed 002's front end also names the user in the body; it may only name the caller.
    user_id = body.user_id or principal.subject
    if user_id != principal.subject and not principal.is_admin:
        raise Forbidden("userId must be your own: only admins start runs for other users")
    job, created = run_once(
        rt,
        channel_id,
        user_id,
        body,
        flask.request.headers.get(IDEMPOTENCY_HEADER),
        actor=principal.actor,
    )
    return json_response({**Accepted(job, created).body(), "requestId": request_id}, 202)


@music_clips_blueprint.get("/api/music-clips/jobs/<job_id>")
@_with_request_id
def job_route(rt: Runtime, request_id: str, job_id: str) -> flask.Response:
    principal = request_principal(flask.request)
    if not _JOB_ID.match(job_id):
        raise JobNotFound(f"Job {job_id[:128]} not found")
    job = visible(principal, get_music_job(rt, job_id))
    return json_response(job_view(rt, job, request_id=request_id, now=rt.repo.clock()))


@music_clips_blueprint.post(CALLBACK_PATH)
def suno_callback_route() -> flask.Response:
    return handle_suno_callback(_runtime(), flask.request)
