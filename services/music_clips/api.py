"""Music Clips' HTTP routes (seed 002), declared like every other API route, so they are in
/openapi.json:

    POST /api/music-clips/channels/{channelId}/runOnce   202 {jobId, channelId, stage, createdAt, message}
    GET  /api/music-clips/jobs/{jobId}                    200 the job view (seed 002); 404 JOB_NOT_FOUND
    POST /api/webhooks/suno/music                         Suno's callback (see callback.py)

The first two need the API's credentials (services/auth). A run is the caller's; a body ``userId``
naming someone else is refused (403) unless the caller is an admin. A job is shown to its owner
and to admins; to anyone else it is missing (404), so no answer tells that it exists. Suno's
callback carries its own token in the URL instead.

Every answer carries a requestId (body and X-Request-Id header), errors included.
"""

from __future__ import annotations

from datetime import datetime

import flask

from services.api.routing import ApiBlueprint, Call, current_runtime
from services.auth import visible
from services.errors import Forbidden, JobNotFound, JobtrailError, Unauthorized
from services.http import json_response
from services.jobs.models import JOB_ID_PATTERN, CamelModel, Heartbeat, is_job_id
from services.jobs.repository import new_request_id, utcnow
from services.music_clips.callback import handle_suno_callback
from services.music_clips.config import CALLBACK_AUTH_PARAM, CALLBACK_PATH
from services.music_clips.service import (
    Accepted,
    RunOnceRequest,
    get_music_job,
    job_view,
    run_once,
)

REQUEST_ID_HEADER = "X-Request-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WWW_AUTHENTICATE = 'Bearer realm="jobtrail"'
CHANNEL_ID_SCHEMA = {"type": "string", "pattern": JOB_ID_PATTERN}
_REQUEST_ID_KEY = "music_clips_request_id"

music_clips_blueprint = ApiBlueprint("music_clips", __name__)


class RunAccepted(CamelModel):
    """Accepted: the job runs on; poll GET /api/music-clips/jobs/{jobId}."""

    success: bool = True
    ok: bool = True
    job_id: str
    channel_id: str
    stage: str
    created_at: datetime
    message: str
    duplicate: bool = False
    request_id: str


class MusicJob(CamelModel):
    """The job as seed 002's front end shows it."""

    success: bool = True
    ok: bool = True
    job_id: str
    channel_id: str
    stage: str
    progress_text: str
    suno_task_id: str | None
    audio_url: str | None
    error: str | None
    error_code: str | None
    created_at: datetime
    updated_at: datetime
    heartbeat: Heartbeat
    trace_id: str
    request_id: str


class CallbackApplied(CamelModel):
    """The callback's outcome for its job."""

    success: bool = True
    ok: bool = True
    job_id: str
    outcome: str


def _request_id() -> str:
    request_id: str = flask.g.get(_REQUEST_ID_KEY) or new_request_id(utcnow())
    setattr(flask.g, _REQUEST_ID_KEY, request_id)
    return request_id


@music_clips_blueprint.after_request
def _stamp_request_id(response: flask.Response) -> flask.Response:
    response.headers[REQUEST_ID_HEADER] = _request_id()
    return response


@music_clips_blueprint.errorhandler(JobtrailError)
def _error_with_request_id(exc: JobtrailError) -> flask.Response:
    response = json_response({**exc.to_body(), "requestId": _request_id()}, exc.http_status)
    if isinstance(exc, Unauthorized) and flask.request.path != CALLBACK_PATH:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


@music_clips_blueprint.operation(
    "POST",
    "/api/music-clips/channels/<channelId>/runOnce",
    summary="Start one Music Clips generation for a channel (202 at once, with the jobId)",
    body=RunOnceRequest,
    body_required=False,
    responses={202: RunAccepted},
    errors=(401, 402, 403, 503),
    path_schemas={"channelId": CHANNEL_ID_SCHEMA},
)
def run_once_route(call: Call, channel_id: str, body: RunOnceRequest) -> tuple[RunAccepted, int]:
    """The body is optional. An Idempotency-Key header makes a repeated request answer the first
    run's job (duplicate: true) instead of starting another."""
    # Seed 002's front end also names the user in the body; it may only name the caller.
    user_id = body.user_id or call.principal.subject
    if user_id != call.principal.subject and not call.principal.is_admin:
        raise Forbidden("userId must be your own: only admins start runs for other users")
    job, created = run_once(
        call.rt,
        channel_id,
        user_id,
        body,
        flask.request.headers.get(IDEMPOTENCY_HEADER),
        actor=call.principal.actor,
    )
    accepted = RunAccepted.model_validate({**Accepted(job, created).body(), "requestId": _request_id()})
    return accepted, 202


@music_clips_blueprint.operation(
    "GET",
    "/api/music-clips/jobs/<jobId>",
    summary="A Music Clips job's stage, progress, Suno task, audio and heartbeat (seed 002)",
    responses={200: MusicJob},
    errors=(401, 404),
    path_schemas={"jobId": {"type": "string", "pattern": JOB_ID_PATTERN}},
)
def job_route(call: Call, job_id: str) -> MusicJob:
    if not is_job_id(job_id):
        raise JobNotFound(f"Job {job_id[:128]} not found")
    job = visible(call.principal, get_music_job(call.rt, job_id))
    return MusicJob.model_validate(job_view(call.rt, job, request_id=_request_id(), now=call.rt.repo.clock()))


@music_clips_blueprint.operation(
    "POST",
    CALLBACK_PATH,
    summary="Suno's generation callback (its own token in the URL, not the API's credentials)",
    responses={200: CallbackApplied},
    errors=(400, 401, 404, 409, 413),
    authenticated=False,
    security=(CALLBACK_AUTH_PARAM,),
)
def suno_callback_route(call: None) -> flask.Response:
    return handle_suno_callback(current_runtime(), flask.request)
