"""The shared resilience of the outside-world clients, driven against the fake world on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask

from devtools.fakes.world import BackgroundServer, FakeWorld, FakeWorldConfig
from services.external.processor import ProcessorClient
from services.external.resilience import (
    CircuitOpenError,
    PermanentExternalError,
    RetryableExternalError,
    parse_retry_after,
    redact,
)
from services.external.video_source import VideoSourceClient
from services.settings import Settings

FAST = {
    "external_timeout_seconds": 0.5,
    "external_max_attempts": 3,
    "external_backoff_initial_seconds": 0.01,
    "external_backoff_max_seconds": 0.05,
    "external_retry_after_max_seconds": 5.0,
    "breaker_fail_max": 3,
    "breaker_reset_seconds": 0.3,
}
VIDEO_URL = "https://videos.example/clip.mp4"


class RecordedSleeps(list[float]):
    """Stands in for time.sleep: remembers what the retry policy asked for, waits for nothing."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def world() -> Iterator[FakeWorld]:
    with FakeWorld(FakeWorldConfig(seed=7)) as w:
        yield w


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@contextmanager
def video_client(world: FakeWorld, sleeps: RecordedSleeps, **overrides: Any) -> Iterator[VideoSourceClient]:
    client = VideoSourceClient(world.settings(Settings(**FAST | overrides)), sleep=sleeps)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def video(world: FakeWorld, sleeps: RecordedSleeps) -> Iterator[VideoSourceClient]:
    with video_client(world, sleeps) as client:
        yield client


def calls(world: FakeWorld, endpoint: str = "video.download") -> int:
    return int(world.stats()["calls"].get(endpoint, 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_retries_with_exponential_backoff_then_succeeds(
    world: FakeWorld, video: VideoSourceClient, sleeps: RecordedSleeps
) -> None:
    world.configure(video={"fail_next_n": 2})

    got = video.download(VIDEO_URL, "job-1")

    assert got.location == "gs://jobtrail-fake/sources/job-1.mp4"
    assert calls(world) == 3
    # multiplier * 2**n plus up to one multiplier of jitter.
    assert len(sleeps) == 2
    assert 0.01 <= sleeps[0] <= 0.02
    assert 0.02 <= sleeps[1] <= 0.03


def test_gives_up_after_max_attempts_with_a_retryable_error(
    world: FakeWorld, video: VideoSourceClient
) -> None:
    world.configure(video={"fail_next_n": 10})

    with pytest.raises(RetryableExternalError) as caught:
        video.download(VIDEO_URL, "job-1")

    assert caught.value.code == "VIDEO_SOURCE_UNAVAILABLE"
    assert caught.value.status == 503
    assert caught.value.to_error() == {
        "code": "VIDEO_SOURCE_UNAVAILABLE",
        "message": caught.value.message,
        "retryable": True,
    }
    assert calls(world) == FAST["external_max_attempts"]


def test_permanent_failure_is_not_retried_and_does_not_trip_the_breaker(
    world: FakeWorld, video: VideoSourceClient, sleeps: RecordedSleeps
) -> None:
    world.configure(video={"permanent_failure": True})

    for _ in range(5):
        with pytest.raises(PermanentExternalError) as caught:
            video.download(VIDEO_URL, "job-1")
        assert caught.value.code == "VIDEO_SOURCE_REJECTED"
        assert caught.value.retryable is False

    assert calls(world) == 5
    assert sleeps == []
    assert video.http.breaker.state == "closed"


def test_a_poison_video_fails_on_every_attempt(world: FakeWorld, video: VideoSourceClient) -> None:
    with pytest.raises(RetryableExternalError) as caught:
        video.download("https://videos.example/poison.mp4", "job-poison")

    assert caught.value.status == 500
    assert "crashed" in caught.value.message
    assert calls(world) == 3
    assert world.stats()["downloads"] == {}


def test_latency_beyond_the_timeout_is_a_retryable_timeout(world: FakeWorld, sleeps: RecordedSleeps) -> None:
    world.configure(video={"latency_ms": 600})

    with (
        video_client(world, sleeps, external_timeout_seconds=0.1, external_max_attempts=2) as client,
        pytest.raises(RetryableExternalError) as caught,
    ):
        client.download(VIDEO_URL, "job-1")

    assert caught.value.code == "VIDEO_SOURCE_TIMEOUT"
    assert caught.value.maybe_processed is True
    assert calls(world) == 2


def test_an_unreachable_service_is_retryable_and_provably_untouched(sleeps: RecordedSleeps) -> None:
    settings = Settings(**FAST, video_source_url=f"http://127.0.0.1:{free_port()}/video")
    client = VideoSourceClient(settings, sleep=sleeps)

    with pytest.raises(RetryableExternalError) as caught:
        client.download(VIDEO_URL, "job-1")
    client.close()

    assert caught.value.code == "VIDEO_SOURCE_UNAVAILABLE"
    assert caught.value.maybe_processed is False
    assert len(sleeps) == 2


def test_retry_after_is_honoured_instead_of_the_backoff(
    world: FakeWorld, video: VideoSourceClient, sleeps: RecordedSleeps
) -> None:
    world.configure(video={"rate_limit_next_n": 1, "retry_after_s": 2})

    video.download(VIDEO_URL, "job-1")

    assert sleeps == [2.0]
    assert calls(world) == 2


def test_a_retry_after_beyond_the_cap_goes_up_at_once(
    world: FakeWorld, video: VideoSourceClient, sleeps: RecordedSleeps
) -> None:
    world.configure(video={"rate_limit_next_n": 1, "retry_after_s": 60})

    with pytest.raises(RetryableExternalError) as caught:
        video.download(VIDEO_URL, "job-1")

    assert caught.value.code == "VIDEO_SOURCE_RATE_LIMITED"
    assert caught.value.retry_after == 60.0
    assert sleeps == []
    assert calls(world) == 1


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_breaker_opens_fails_fast_then_half_opens_and_closes(
    world: FakeWorld, sleeps: RecordedSleeps
) -> None:
    world.configure(video={"fail_next_n": 100})
    with video_client(world, sleeps, external_max_attempts=1) as client:
        for _ in range(3):
            with pytest.raises(RetryableExternalError) as caught:
                client.download(VIDEO_URL, "job-1")
            assert caught.value.code == "VIDEO_SOURCE_UNAVAILABLE"
        assert client.http.breaker.state == "open"

        with pytest.raises(CircuitOpenError) as opened:
            client.download(VIDEO_URL, "job-1")
        assert opened.value.code == "VIDEO_SOURCE_CIRCUIT_OPEN"
        assert opened.value.retryable is True
        assert opened.value.retry_after is not None
        assert 0 < opened.value.retry_after <= 0.3
        assert calls(world) == 3  # failed fast: the service never saw the fourth call

        world.configure(video={"fail_next_n": 0})
        time.sleep(0.35)
        assert client.download(VIDEO_URL, "job-1").size_bytes > 0
        assert client.http.breaker.state == "closed"
        assert calls(world) == 4


def test_a_failed_trial_call_opens_the_breaker_again(world: FakeWorld, sleeps: RecordedSleeps) -> None:
    world.configure(video={"fail_next_n": 100})
    with video_client(world, sleeps, external_max_attempts=1) as client:
        for _ in range(3):
            with pytest.raises(RetryableExternalError):
                client.download(VIDEO_URL, "job-1")
        time.sleep(0.35)

        with pytest.raises(RetryableExternalError) as trial:
            client.download(VIDEO_URL, "job-1")
        assert not isinstance(trial.value, CircuitOpenError)
        with pytest.raises(CircuitOpenError):
            client.download(VIDEO_URL, "job-1")

        assert client.http.breaker.state == "open"
        assert calls(world) == 4


def test_retries_within_one_call_count_towards_the_breaker(
    world: FakeWorld, video: VideoSourceClient
) -> None:
    world.configure(video={"fail_next_n": 100})

    with pytest.raises(RetryableExternalError):
        video.download(VIDEO_URL, "job-1")
    with pytest.raises(CircuitOpenError):
        video.download(VIDEO_URL, "job-1")

    assert calls(world) == 3


def test_the_breaker_does_not_serialize_concurrent_calls(world: FakeWorld, video: VideoSourceClient) -> None:
    # pybreaker's own call() holds a lock around the guarded call; ours must not.
    world.configure(video={"latency_ms": 300})
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def download(job_id: str) -> None:
        start.wait()
        try:
            video.download(VIDEO_URL, job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=download, args=(f"job-{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert world.stats()["max_in_flight"]["video.download"] == 2


def test_an_unparseable_answer_is_a_permanent_bad_response(sleeps: RecordedSleeps) -> None:
    odd = Flask("odd")
    odd.add_url_rule("/process", "wrong_shape", lambda: {"unexpected": True}, methods=["POST"])
    odd.add_url_rule("/text/process", "not_json", lambda: "<html>hello</html>", methods=["POST"])

    with BackgroundServer(odd) as server:
        for base, why in ((server.url, "invalid field"), (f"{server.url}/text", "not JSON")):
            client = ProcessorClient(Settings(**FAST, processor_url=base), sleep=sleeps)
            with pytest.raises(PermanentExternalError) as caught:
                client.process("gs://b/x.mp4", "job-1")
            client.close()
            assert caught.value.code == "PROCESSOR_BAD_RESPONSE"
            assert why in caught.value.message


def test_a_malformed_base_url_is_a_permanent_configuration_error(sleeps: RecordedSleeps) -> None:
    client = VideoSourceClient(Settings(**FAST, video_source_url="not-a-url"), sleep=sleeps)

    with pytest.raises(PermanentExternalError) as caught:
        client.download(VIDEO_URL, "job-1")
    client.close()

    assert caught.value.code == "VIDEO_SOURCE_REQUEST_INVALID"
    assert sleeps == []


def test_clients_touch_no_network_when_built(world: FakeWorld) -> None:
    client = VideoSourceClient(world.settings(Settings(**FAST)))
    client.close()

    assert world.stats()["calls"] == {}


def test_redact_replaces_every_secret() -> None:
    assert redact("key=abc123 again abc123", ["abc123", ""]) == "key=[REDACTED] again [REDACTED]"
