"""Music Clips' polling fallback (HTTP, Cloud Scheduler every minute; IAM-invoker only)."""

import flask
import functions_framework

from services.deployment import require_deployment
from services.music_clips.poller import handle_poll
from services.runtime import get_runtime

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("poll_music_jobs")


@functions_framework.http
def poll_music_jobs(request: flask.Request) -> flask.Response:
    return handle_poll(get_runtime(), request)
