"""Where Suno calls back, and how often the poller asks when it does not. Pure functions of settings."""

from __future__ import annotations

from urllib.parse import urlencode

from services.jobs.models import Job
from services.settings import Settings

CALLBACK_PATH = "/api/webhooks/suno/music"
# Suno calls back with no headers of ours, so the secret rides in the URL it was given.
CALLBACK_AUTH_PARAM = "token"
# The job and attempt a generation was started for, so a callback that outruns the worker storing
# the task id still finds its job (services/music_clips/callback.py).
CALLBACK_JOB_PARAM = "jobId"
CALLBACK_ATTEMPT_PARAM = "attempt"


def suno_callback_url(settings: Settings, job: Job | None = None) -> str | None:
    """The URL handed to Suno with a generation for ``job``; None when PUBLIC_BASE_URL is not set."""
    if not settings.public_base_url:
        return None
    params = {CALLBACK_AUTH_PARAM: settings.suno_callback_token.get_secret_value()}
    if job is not None:
        params |= {CALLBACK_JOB_PARAM: job.job_id, CALLBACK_ATTEMPT_PARAM: str(job.attempt)}
    return f"{settings.public_base_url.rstrip('/')}{CALLBACK_PATH}?{urlencode(params)}"


def poll_delay_seconds(settings: Settings, polls: int) -> float:
    """Seconds before poll number ``polls + 1``: exponential from suno_poll_interval_seconds, capped."""
    delay = settings.suno_poll_interval_seconds * 2 ** min(polls, 30)
    return float(
        min(delay, max(settings.suno_poll_max_interval_seconds, settings.suno_poll_interval_seconds))
    )
