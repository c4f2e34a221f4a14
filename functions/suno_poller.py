"""Music Clips' polling fallback (HTTP, Cloud Scheduler every minute; IAM-invoker only)."""

from dataclasses import asdict

import flask
import functions_framework

from services.http import json_response
from services.music_clips import poller
from services.runtime import get_runtime


@functions_framework.http
def poll_music_jobs(request: flask.Request) -> flask.Response:
    return json_response(asdict(poller.poll_music_jobs(get_runtime())))
