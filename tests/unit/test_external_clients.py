"""The video source, processor and Instagram clients against the fake world on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.fakes.world import FakeWorld, FakeWorldConfig
from services.external.instagram import InstagramClient
from services.external.processor import ProcessorClient
from services.external.resilience import PermanentExternalError
from services.external.video_source import VideoSourceClient
from services.settings import Settings

FAST = {
    "external_timeout_seconds": 0.5,
    "external_max_attempts": 3,
    "external_backoff_initial_seconds": 0.01,
    "external_backoff_max_seconds": 0.05,
}


@pytest.fixture
def world() -> Iterator[FakeWorld]:
    with FakeWorld(FakeWorldConfig(seed=11)) as w:
        yield w


@pytest.fixture
def settings(world: FakeWorld) -> Settings:
    # Overrides the emulator-backed ``settings`` fixture: these tests need no emulator.
    return world.settings(Settings(**FAST))


@pytest.fixture
def instagram(settings: Settings) -> Iterator[InstagramClient]:
    client = InstagramClient(settings)
    yield client
    client.close()


def test_video_source_download(world: FakeWorld, settings: Settings) -> None:
    client = VideoSourceClient(settings)
    first = client.download("https://videos.example/a.mp4", "job-1")
    again = client.download("https://videos.example/a.mp4", "job-1")
    client.close()

    assert first.location == "gs://jobtrail-fake/sources/job-1.mp4"
    assert first.size_bytes > 0
    assert again == first
    assert world.stats()["downloads"] == {"job-1": 2}


def test_video_source_rejects_a_non_http_url(settings: Settings) -> None:
    client = VideoSourceClient(settings)
    with pytest.raises(PermanentExternalError) as caught:
        client.download("ftp://videos.example/a.mp4", "job-1")
    client.close()

    assert caught.value.code == "VIDEO_SOURCE_REJECTED"
    assert "http(s)" in caught.value.message


def test_processor_process(world: FakeWorld, settings: Settings) -> None:
    client = ProcessorClient(settings)
    prepared = client.process("gs://jobtrail-fake/sources/job-1.mp4", "job-1")
    client.close()

    assert prepared.location == "gs://jobtrail-fake/prepared/job-1.mp4"
    assert prepared.duration_seconds >= 5.0
    assert prepared.compute_seconds == round(prepared.duration_seconds * 0.4, 3)
    assert world.stats()["calls"] == {"processor.process": 1}


def test_instagram_publish(world: FakeWorld, instagram: InstagramClient) -> None:
    published = instagram.publish("acc/1 ü", "gs://b/prepared/job-1.mp4", "a caption", "job-1")

    assert published.media_container_id.startswith("1789")
    assert published.permalink.startswith("https://www.instagram.com/p/")
    assert world.stats()["publishes"] == {"job-1": 1}


def test_instagram_publish_is_idempotent_per_job(world: FakeWorld, instagram: InstagramClient) -> None:
    first = instagram.publish("acc-1", "gs://b/prepared/job-1.mp4", "caption", "job-1")
    repeat = instagram.publish("acc-1", "gs://b/prepared/job-1.mp4", "caption", "job-1")
    other = instagram.publish("acc-1", "gs://b/prepared/job-2.mp4", "caption", "job-2")

    assert repeat == first
    assert other.media_container_id != first.media_container_id
    stats = world.stats()
    assert stats["publishes"] == {"job-1": 1, "job-2": 1}
    assert stats["publish_replays"] == {"job-1": 1}


def test_a_publish_whose_answer_was_lost_is_retried_without_posting_twice(
    world: FakeWorld, instagram: InstagramClient
) -> None:
    # The first request posts, then stalls past the client's timeout: the client cannot know it worked.
    world.configure(instagram={"lose_response_next_n": 1, "lost_response_stall_ms": 1500})

    published = instagram.publish("acc-1", "gs://b/prepared/job-1.mp4", "caption", "job-1")

    stats = world.stats()
    assert stats["calls"]["instagram.publish"] == 2
    assert stats["publishes"] == {"job-1": 1}
    assert stats["publish_replays"] == {"job-1": 1}
    assert published.media_container_id.startswith("1789")


def test_instagram_permanent_failure(world: FakeWorld, instagram: InstagramClient) -> None:
    world.configure(instagram={"permanent_failure": True})

    with pytest.raises(PermanentExternalError) as caught:
        instagram.publish("acc-1", "gs://b/prepared/job-1.mp4", "caption", "job-1")

    assert caught.value.code == "INSTAGRAM_REJECTED"
    assert world.stats()["publishes"] == {}
