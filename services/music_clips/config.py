"""Where Suno calls back, and how often the poller asks when it does not. Pure functions of settings."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from services.jobs.models import Job
from services.settings import Settings

CALLBACK_PATH = "/api/webhooks/suno/music"
# Suno calls back with no headers of ours, so the authorization rides in the URL it was given. That
# URL lands in request logs, so it opens one job attempt only: its token is an HMAC of the job and
# the attempt under SUNO_CALLBACK_TOKEN, never the secret itself (services/music_clips/callback.py).
CALLBACK_AUTH_PARAM = "token"
CALLBACK_JOB_PARAM = "jobId"
CALLBACK_ATTEMPT_PARAM = "attempt"


def callback_token(settings: Settings, job_id: str, attempt: int) -> str:
    key = settings.suno_callback_token.get_secret_value().encode()
    return hmac.new(key, f"{job_id}:{attempt}".encode(), hashlib.sha256).hexdigest()


def suno_callback_url(settings: Settings, job: Job | None = None) -> str | None:
    """The URL handed to Suno with a generation for ``job`` (without a job: the bare endpoint);
    None when PUBLIC_BASE_URL is not set."""
    if not settings.public_base_url:
        return None
    url = f"{settings.public_base_url.rstrip('/')}{CALLBACK_PATH}"
    if job is None:
        return url
    params = {
        CALLBACK_JOB_PARAM: job.job_id,
        CALLBACK_ATTEMPT_PARAM: str(job.attempt),
        CALLBACK_AUTH_PARAM: callback_token(settings, job.job_id, job.attempt),
    }
    return f"{url}?{urlencode(params)}"


def poll_delay_seconds(settings: Settings, polls: int) -> float:
    """Seconds before poll number ``polls + 1``: exponential from suno_poll_interval_seconds, capped."""
    delay = settings.suno_poll_interval_seconds * 2 ** min(polls, 30)
    return float(
        min(delay, max(settings.suno_poll_max_interval_seconds, settings.suno_poll_interval_seconds))
    )
