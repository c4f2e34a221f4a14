"""Where Suno calls back and how the poller backs off: pure functions of settings."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from services.music_clips.config import CALLBACK_PATH, poll_delay_seconds, suno_callback_url
from services.settings import Settings


def test_callback_url_carries_the_token_url_encoded():
    settings = Settings(public_base_url="https://api.example.com/", suno_callback_token=SecretStr("a b&c=d"))
    url = suno_callback_url(settings)
    assert url is not None
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "api.example.com", CALLBACK_PATH)
    assert parse_qs(parts.query) == {"token": ["a b&c=d"]}


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
