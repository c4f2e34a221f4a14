"""clip-render: a service that runs its own pipeline and reports its jobs to jobtrail.

A Cloud Run function (functions-framework) behind its own Pub/Sub push subscription: each message
asks for one clip to be rendered and uploaded. The rendering is simulated (it sleeps); the
reporting is real, with jobtrail_client. Its pipeline is declared in jobtrail as
services/pipelines/declared/clip_render.yaml, which names this service (clip-render) as a reporter.

Configuration (environment, read once):
    JOBTRAIL_URL            jobtrail's API, e.g. https://jobtrail-api-xyz.a.run.app
    JOBTRAIL_REPORTER_KEY   this service's reporter key; unset on Cloud Run = a Google ID token of
                            its service account, minted for JOBTRAIL_URL
    RENDER_SECONDS, UPLOAD_SECONDS, HEARTBEAT_SECONDS   how long the simulated work takes, and how
                            often a running stage says it is alive
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time

import flask
import functions_framework

from jobtrail_client import GoogleIdToken, HttpTransport, ReporterKey, Tracker

_tracker: Tracker | None = None
_lock = threading.Lock()


def tracker() -> Tracker:
    """One tracker per instance, built on the first request (never at import time)."""
    global _tracker
    with _lock:
        if _tracker is None:
            url = os.environ["JOBTRAIL_URL"]
            key = os.environ.get("JOBTRAIL_REPORTER_KEY")
            credentials = ReporterKey(key) if key else GoogleIdToken(audience=url)
            _tracker = Tracker(
                HttpTransport(url, credentials),
                pipeline="clip_render",
                heartbeat_seconds=float(os.environ.get("HEARTBEAT_SECONDS", "20")),
                backoff_max_seconds=2.0,
            )
        return _tracker


def render(clip_id: str) -> str:
    """Stands in for the real renderer; returns the rendered file's name."""
    time.sleep(float(os.environ.get("RENDER_SECONDS", "2")))
    return f"{clip_id}.mp4"


def upload(name: str) -> str:
    time.sleep(float(os.environ.get("UPLOAD_SECONDS", "1")))
    return f"gs://clips/{name}"


@functions_framework.http
def render_clip(request: flask.Request) -> tuple[str, int]:
    envelope = request.get_json(silent=True) or {}
    try:
        order = json.loads(base64.b64decode(envelope["message"]["data"]))
        clip_id = str(order["clipId"])
    except (KeyError, TypeError, ValueError):
        return "not a render order", 400  # the subscription's dead-letter policy keeps it
    t = tracker()
    # A redelivery uses the same key, so it finds the same job: creating twice is safe.
    job = t.start_job(
        clip_id,
        account_id=order.get("accountId", "acc-demo"),
        scenario_id=order.get("scenarioId", "clips"),
        source_id=clip_id,
        user_id=order.get("userId", "demo"),
        input={"clipId": clip_id},
    )
    with t.stage(job, "rendering", done="rendered"):
        rendered = render(clip_id)
    with t.stage(job, "uploading"):
        url = upload(rendered)
    t.succeeded(job, {"url": url})
    return "", 204
