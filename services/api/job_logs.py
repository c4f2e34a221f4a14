"""One job's log lines, live: GET /api/jobs/<jobId>/logs/stream (server-sent events).

The job page opens it with a one-time ticket (POST /api/stream/tickets; EventSource sends no
headers). Lines come from services/reads/job_logs.py, read again every poll interval while the
job runs; the stream ends (event ``end``) once the job has finished and no line came for
``job_log_linger_seconds``. A job the caller may not see answers the 404 of a missing one.
Each open stream holds a server thread, so an instance holds at most ``job_log_max_streams``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

import flask
from flask.blueprints import BlueprintSetupState

from services.api.routing import current_runtime
from services.api.stream_tickets import TICKET_PARAM, redeem_ticket
from services.auth import SETTINGS_EXTENSION, Principal, authenticate
from services.errors import JobtrailError, NotFound
from services.reads.job_logs import LogSource, log_source
from services.reads.jobs import visible_job
from services.runtime import Runtime
from services.settings import Settings

JOB_LOGS_EXTENSION = "jobtrail.job_logs"
HEARTBEAT_SECONDS = 15.0
JOB_CHECK_SECONDS = 2.0
RETRY_MS = 3000

job_logs_blueprint = flask.Blueprint("job_logs", __name__)


class LogsUnavailable(NotFound):
    code = "LOGS_UNAVAILABLE"


class TooManyLogStreams(JobtrailError):
    code = "TOO_MANY_LOG_STREAMS"
    http_status = 503


class JobLogStreams:
    """This instance's log source and how many streams it may hold at once."""

    def __init__(self, source: LogSource | None, limit: int) -> None:
        self.source = source
        self._slots = threading.BoundedSemaphore(limit)

    def acquire(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise TooManyLogStreams("this instance follows as many job logs as it can; try again shortly")

    def release(self) -> None:
        self._slots.release()


@job_logs_blueprint.record_once
def _install(state: BlueprintSetupState) -> None:
    runtime = state.options.get("runtime")
    if not isinstance(runtime, Runtime):
        raise RuntimeError("register the job logs blueprint with runtime=rt")
    settings = runtime.settings
    state.app.extensions[JOB_LOGS_EXTENSION] = JobLogStreams(
        log_source(settings), settings.job_log_max_streams
    )


def frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {flask.json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _principal(settings: Settings) -> Principal:
    headers = flask.request.headers
    ticket = flask.request.args.get(TICKET_PARAM)
    if ticket is not None and not headers.get("Authorization") and not headers.get("X-API-Key"):
        return redeem_ticket(current_runtime(), ticket)
    return authenticate(settings, headers)


@job_logs_blueprint.get("/api/jobs/<job_id>/logs/stream")
def job_log_stream(job_id: str) -> flask.Response:
    rt = current_runtime()
    principal = _principal(flask.current_app.extensions[SETTINGS_EXTENSION])
    visible_job(rt, principal, job_id)
    streams: JobLogStreams = flask.current_app.extensions[JOB_LOGS_EXTENSION]
    if streams.source is None:
        raise LogsUnavailable(
            "this deployment reads no job logs (JOB_LOG_SOURCE=none); use the job's logs link"
        )
    streams.acquire()
    body = _follow(rt, streams.source, job_id)

    def close() -> None:
        body.close()
        streams.release()

    response = flask.Response(body, mimetype="text/event-stream")
    response.call_on_close(close)
    response.headers["Cache-Control"] = "no-cache, no-transform"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _follow(rt: Runtime, source: LogSource, job_id: str) -> Generator[bytes, None, None]:
    yield f"retry: {RETRY_MS}\n".encode() + frame("hello", {"jobId": job_id})
    position: Any = None
    finished_quiet_since: float | None = None
    last_sent = last_check = time.monotonic()
    finished = False
    while True:
        lines, position = source.read(job_id, position)
        now = time.monotonic()
        for line in lines:
            yield frame("log", line.model_dump(mode="json", by_alias=True))
        if lines:
            last_sent, finished_quiet_since = now, None
        if now - last_check >= JOB_CHECK_SECONDS or finished:
            last_check = now
            job = rt.repo.get_job(job_id)
            finished = job.status.is_terminal
            if finished and finished_quiet_since is None and not lines:
                finished_quiet_since = now
            quiet = now - finished_quiet_since if finished_quiet_since is not None else -1.0
            if finished and quiet >= rt.settings.job_log_linger_seconds:
                yield frame("end", {"jobId": job_id, "status": job.status.value})
                return
        if now - last_sent >= HEARTBEAT_SECONDS:
            last_sent = now
            yield b": keep-alive\n\n"
        time.sleep(source.poll_seconds)
