"""The stale-job sweeper (HTTP, Cloud Scheduler every minute; IAM-invoker only)."""

from dataclasses import asdict

import flask
import functions_framework

from services import sweeper
from services.http import json_response
from services.runtime import get_runtime


@functions_framework.http
def sweep_stale_jobs(request: flask.Request) -> flask.Response:
    return json_response(asdict(sweeper.sweep_stale_jobs(get_runtime())))
