"""A pipeline on loopback: fake outside world, worker and DLQ analyzer behind real emulator push
subscriptions, webhook intake over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devtools.fakes.world import FakeWorld
from devtools.local.serve import BackgroundServer, function_app
from infra.bootstrap import bootstrap
from infra.topology import RetryPolicy
from services.clients import Clients
from services.intake import handle_webhook
from services.runtime import Runtime
from services.settings import Settings
from services.worker.http import handle_dead_letter, handle_push

# Seconds, not minutes: a poison message reaches the DLQ within a test.
TEST_BACKOFF = RetryPolicy(minimum_backoff="1s", maximum_backoff="2s")


@pytest.fixture
def world() -> Iterator[FakeWorld]:
    with FakeWorld() as fake:
        yield fake


@pytest.fixture
def pipeline_settings(settings: Settings, world: FakeWorld) -> Settings:
    return settings.model_copy(
        update={
            "video_source_url": f"{world.url}/video",
            "processor_url": f"{world.url}/processor",
            "instagram_url": f"{world.url}/instagram",
            "suno_api_url": f"{world.url}/suno",
            "external_timeout_seconds": 2.0,
            "handler_timeout_seconds": 10.0,
            "dependency_timeout_seconds": 1.0,
            "delivery_deadline_seconds": 8.0,
            "external_backoff_initial_seconds": 0.05,
            "external_backoff_max_seconds": 0.2,
            "breaker_reset_seconds": 1.0,
        }
    )


@pytest.fixture
def rt(pipeline_settings: Settings, clients: Clients, repo) -> Runtime:  # repo: owns cleanup
    return Runtime(pipeline_settings, clients)


@dataclass
class Stack:
    rt: Runtime
    intake_url: str
    worker_url: str
    dlq_url: str


@pytest.fixture
def stack(rt: Runtime) -> Iterator[Stack]:
    with (
        BackgroundServer(function_app(handle_push, rt, "worker")) as worker,
        BackgroundServer(function_app(handle_dead_letter, rt, "dlq")) as dlq,
        BackgroundServer(function_app(handle_webhook, rt, "intake")) as intake,
    ):
        bootstrap(
            rt.settings.google_cloud_project,
            prefix=rt.settings.topic_prefix,
            backoff=TEST_BACKOFF,
            push_endpoints={"pipeline_worker": worker.url, "dlq_analyzer": dlq.url},
        )
        yield Stack(rt=rt, intake_url=intake.url, worker_url=worker.url, dlq_url=dlq.url)
