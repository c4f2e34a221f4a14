"""Where Suno calls back and how the poller backs off: pure functions of settings."""

from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote_plus, urlsplit

from pydantic import SecretStr

from services.music_clips.config import CALLBACK_PATH, callback_token, poll_delay_seconds, suno_callback_url
from services.settings import Settings


def test_callback_url_authorizes_one_job_attempt_and_never_carries_the_secret():
    secret = "a b&c=d-callback-secret"
    settings = Settings(public_base_url="https://api.example.com/", suno_callback_token=SecretStr(secret))
    job = SimpleNamespace(job_id="job_1703616000000_abc123", attempt=2)
    url = suno_callback_url(settings, job)  # type: ignore[arg-type]
    assert url is not None and secret not in unquote_plus(url)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "api.example.com", CALLBACK_PATH)
    expected = hmac.new(secret.encode(), b"job_1703616000000_abc123:2", hashlib.sha256).hexdigest()
    assert parse_qs(parts.query) == {"jobId": [job.job_id], "attempt": ["2"], "token": [expected]}
    # Another attempt of the same job, or another job, gets another token.
    assert callback_token(settings, job.job_id, 3) != expected
    assert callback_token(settings, "job_1703616000000_abc124", 2) != expected


def test_no_public_url_means_no_callback_url():
    assert suno_callback_url(Settings(public_base_url=None)) is None
    assert suno_callback_url(Settings(public_base_url="")) is None


def test_poll_delay_doubles_from_the_interval_up_to_the_cap():
    settings = Settings(suno_poll_interval_seconds=15, suno_poll_max_interval_seconds=120)
    assert [poll_delay_seconds(settings, n) for n in range(6)] == [15, 30, 60, 120, 120, 120]
    assert poll_delay_seconds(settings, 10_000) == 120


def test_a_cap_below_the_interval_never_shortens_it():
    settings = Settings(suno_poll_interval_seconds=30, suno_poll_max_interval_seconds=5)
    assert [poll_delay_seconds(settings, n) for n in range(3)] == [30, 30, 30]
