"""The stale-job sweeper (HTTP, Cloud Scheduler every minute; IAM-invoker only)."""

import flask
import functions_framework

from services.deployment import require_deployment
from services.runtime import get_runtime
from services.sweeper import handle_sweep

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("sweep_stale_jobs")


@functions_framework.http
def sweep_stale_jobs(request: flask.Request) -> flask.Response:
    return handle_sweep(get_runtime(), request)
