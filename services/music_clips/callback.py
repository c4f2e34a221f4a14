"""POST /api/webhooks/suno/music: Suno reports a task's outcome.

Authenticated by the secret token in the callback URL (Suno sends no signature), compared in
constant time. Answers 200 for every callback it understood, applied or not (a duplicate or late
one changes nothing), so Suno stops resending; 401 for a wrong token, 404 for a task no job waits
on (logged: a stranger's task, or one of an earlier attempt of a retried job).

The job is found by the task id the worker stored. Suno may call back before the worker has stored
it (the fake world does within 50 ms; the real one may): then the job and attempt named in the
callback URL (services/music_clips/config.py) identify it, and the result is applied with the task
id stored alongside.
"""

from __future__ import annotations

import hmac
import json

import flask

from services.errors import InvalidInput, JobNotFound, Unauthorized
from services.external.suno import parse_callback
from services.http import entry_point, json_response, read_body
from services.jobs.models import Job, is_job_id
from services.music_clips.config import CALLBACK_ATTEMPT_PARAM, CALLBACK_AUTH_PARAM, CALLBACK_JOB_PARAM
from services.music_clips.service import apply_suno_result
from services.pipelines.music_clips import MUSIC_CLIPS
from services.runtime import Runtime
from services.telemetry.logging import bind_job, bind_labels, get_logger

log = get_logger(__name__)

_TASK_ID_LOG_LIMIT = 100


def verify_callback_token(rt: Runtime, request: flask.Request) -> None:
    presented = request.args.get(CALLBACK_AUTH_PARAM, "").encode()
    expected = rt.settings.suno_callback_token.get_secret_value().encode()
    if not hmac.compare_digest(presented, expected):
        log.warning("Suno callback refused: missing or wrong callback token")
        raise Unauthorized("missing or wrong callback token")


def waiting_job(rt: Runtime, request: flask.Request, task_id: str) -> Job | None:
    """The Music Clips job waiting on ``task_id``, or None.

    By the stored task id first; else by the job and attempt the callback URL names, if that job has
    no task id yet (the worker is between Suno's answer and storing it). A job that already has
    another task id, or a later attempt, is not this task's.
    """
    job = rt.repo.find_job_by_suno_task(task_id)
    if job is None:
        job_id = request.args.get(CALLBACK_JOB_PARAM, "")
        if not is_job_id(job_id):
            return None
        try:
            job = rt.repo.get_job(job_id)
        except JobNotFound:
            return None
        if job.suno_task_id is not None or request.args.get(CALLBACK_ATTEMPT_PARAM) != str(job.attempt):
            return None
    return job if job.pipeline == MUSIC_CLIPS.name else None


@entry_point("suno_callback")
def handle_suno_callback(rt: Runtime, request: flask.Request) -> flask.Response:
    verify_callback_token(rt, request)
    try:
        body = json.loads(read_body(request, rt.settings.max_body_bytes) or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's stack
        raise InvalidInput("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("body is not a JSON object")
    callback = parse_callback(body)
    task_id = callback.task_id[:_TASK_ID_LOG_LIMIT]
    job = waiting_job(rt, request, callback.task_id)
    if job is None:
        with bind_labels(sunoTaskId=task_id):
            log.warning("Suno callback for unknown task %s (%s)", task_id, callback.status)
        raise JobNotFound(f"no Music Clips job waits on Suno task {task_id}")
    with bind_job(job, sunoTaskId=task_id):
        outcome = apply_suno_result(rt, job, callback, actor="suno-callback")
    return json_response({"success": True, "ok": True, "jobId": job.job_id, "outcome": outcome.value})
