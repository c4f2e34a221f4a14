"""POST /api/webhooks/suno/music: Suno reports a task's outcome.

Suno sends no signature, and its callback URL ends up in request logs, so neither the URL nor the
body is trusted as it comes:

- the URL names the job and attempt the generation was started for, and its token is an HMAC of the
  two under SUNO_CALLBACK_TOKEN (services/music_clips/config.py), compared in constant time: a URL
  read from a log opens that one attempt, and nothing once the job has finished or been retried;
- a callback only tells us to look: a claimed outcome (success or failure) is confirmed with Suno's
  record-info before the job moves, and the job takes Suno's answer (its audio URL), not the body's.
  If Suno cannot be asked right now, the job stays pending and the poller confirms later.

Answers 200 for every callback it understood, applied or not (a duplicate or late one changes
nothing), so Suno stops resending; 401 for a wrong token; 404 for a task that is not the attempt's
(the job already waits on another task). The task id stored by the worker may not be there yet
(Suno can call back before the worker commits it): then the confirmed result is applied with the
callback's task id stored alongside.
"""

from __future__ import annotations

import hmac
import json

import flask

from services.errors import InvalidInput, JobNotFound, Unauthorized
from services.external.resilience import ExternalError
from services.external.suno import SunoCallback, SunoRecord, parse_callback
from services.http import entry_point, json_response, read_body
from services.jobs.models import Job, is_job_id
from services.music_clips.config import (
    CALLBACK_ATTEMPT_PARAM,
    CALLBACK_AUTH_PARAM,
    CALLBACK_JOB_PARAM,
    callback_token,
)
from services.music_clips.service import SunoOutcome, apply_suno_result
from services.pipelines.music_clips import MUSIC_CLIPS
from services.runtime import Runtime
from services.telemetry.logging import bind_job, bind_labels, get_logger

log = get_logger(__name__)

_TASK_ID_LOG_LIMIT = 100
_MAX_ATTEMPT_DIGITS = 6


def authorized_attempt(rt: Runtime, request: flask.Request) -> tuple[str, int]:
    """(job id, attempt) the callback URL was issued for; Unauthorized unless its token is theirs."""
    job_id = request.args.get(CALLBACK_JOB_PARAM, "")
    attempt = request.args.get(CALLBACK_ATTEMPT_PARAM, "")
    presented = request.args.get(CALLBACK_AUTH_PARAM, "").encode()
    if is_job_id(job_id) and attempt.isdigit() and len(attempt) <= _MAX_ATTEMPT_DIGITS:
        expected = callback_token(rt.settings, job_id, int(attempt)).encode()
        if hmac.compare_digest(presented, expected):
            return job_id, int(attempt)
    log.warning("Suno callback refused: missing or wrong callback token")
    raise Unauthorized("missing or wrong callback token")


def attempt_job(rt: Runtime, job_id: str, attempt: int, task_id: str) -> Job | None:
    """The Music Clips job the URL names, while ``task_id`` can be its attempt's task; else None.

    A finished job is returned as is (the callback is then a no-op); a later attempt, or an attempt
    that already waits on another task, is not this callback's."""
    try:
        job = rt.repo.get_job(job_id)
    except JobNotFound:
        return None
    if job.pipeline != MUSIC_CLIPS.name:
        return None
    if job.status.is_terminal:
        return job
    if job.attempt != attempt or job.suno_task_id not in (None, task_id):
        return None
    return job


def confirmed_outcome(rt: Runtime, job: Job, callback: SunoCallback) -> SunoOutcome:
    """Apply what Suno's record-info says about the callback's task; the body's claim only prompts it."""
    if job.status.is_terminal:
        return SunoOutcome.ALREADY_FINISHED
    if not callback.finished:
        if job.suno_task_id is None:
            # The worker may never hear generate's answer: this names the attempt's task for it.
            rt.repo.attach_suno_task(job.job_id, job.attempt, callback.task_id)
        return apply_suno_result(rt, job, callback, actor="suno-callback")  # a sign of life
    try:
        record = rt.suno.record_info(callback.task_id)
    except ExternalError as exc:
        log.warning("Suno callback not confirmed (%s); the poller will ask again", exc.code)
        return apply_suno_result(rt, job, SunoRecord(status="PENDING"), actor="suno-callback")
    if callback.succeeded and not record.succeeded:
        log.warning("Suno callback claimed success, Suno says %s: not applied", record.status)
    return apply_suno_result(rt, job, record, actor="suno-callback", task_id=callback.task_id)


@entry_point("suno_callback")
def handle_suno_callback(rt: Runtime, request: flask.Request) -> flask.Response:
    job_id, attempt = authorized_attempt(rt, request)
    try:
        body = json.loads(read_body(request, rt.settings.max_body_bytes) or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's stack
        raise InvalidInput("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("body is not a JSON object")
    callback = parse_callback(body)
    task_id = callback.task_id[:_TASK_ID_LOG_LIMIT]
    job = attempt_job(rt, job_id, attempt, callback.task_id)
    if job is None:
        with bind_labels(sunoTaskId=task_id, jobId=job_id):
            log.warning(
                "Suno callback for a task that is not the attempt's: %s (%s)", task_id, callback.status
            )
        raise JobNotFound(f"no Music Clips job waits on Suno task {task_id}")
    with bind_job(job, sunoTaskId=task_id):
        outcome = confirmed_outcome(rt, job, callback)
    return json_response({"success": True, "ok": True, "jobId": job.job_id, "outcome": outcome.value})
