"""Suno's callback for Music Clips (HTTP): POST /api/webhooks/suno/music?token=..."""

import flask
import functions_framework

from services.deployment import require_deployment
from services.music_clips.callback import handle_suno_callback
from services.runtime import get_runtime

# In the cloud, refuse to start (Cloud Run fails the revision) without what the deployment must set.
require_deployment("suno_callback")


@functions_framework.http
def suno_callback(request: flask.Request) -> flask.Response:
    return handle_suno_callback(get_runtime(), request)
