"""Every HTTP entry point served in-process on loopback, over the session's emulators.

Each entry point runs the handler its functions/ module runs, on one emulator-backed runtime with a
per-test collection and topic prefix (tests/conftest.py), so Firestore can be counted before and
after every request. The outside world (Suno's credit check) and the chat services are fakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import flask
import pytest
from pydantic import SecretStr

from devtools.fakes.chat import DEFAULT_BOT_TOKEN, FakeChat
from devtools.fakes.world import FakeWorld
from devtools.local.serve import BackgroundServer, function_app
from infra.bootstrap import bootstrap
from services.alerting.channels import channels_from_settings
from services.alerting.http import create_app as create_relay_app
from services.alerting.relay import AlertRelay, RepositoryClaims
from services.api import create_app as create_api_app
from services.clients import Clients
from services.http import json_response
from services.intake import handle_webhook
from services.jobs.repository import JobRepository
from services.music_clips import poller
from services.music_clips.callback import handle_suno_callback
from services.runtime import Runtime
from services.settings import Settings
from services.sweeper import sweep_stale_jobs
from services.worker.http import handle_dead_letter, handle_push

# Everything the handlers can write, by collection (the repository's names).
COLLECTIONS = ("jobs", "idempotency", "executions", "queues", "audit", "alerts")


def sweep(rt: Runtime, request: flask.Request) -> flask.Response:
    """functions/sweeper.py's body, with the runtime handed in."""
    return json_response(asdict(sweep_stale_jobs(rt)))


def poll(rt: Runtime, request: flask.Request) -> flask.Response:
    """functions/suno_poller.py's body, with the runtime handed in."""
    return json_response(asdict(poller.poll_music_jobs(rt)))


@dataclass
class Endpoints:
    rt: Runtime
    urls: dict[str, str]

    def counts(self) -> dict[str, int]:
        repo = self.rt.repo
        return {name: int(repo.collection(name).count().get()[0][0].value) for name in COLLECTIONS}


@pytest.fixture
def fuzz_runtime(settings: Settings, clients: Clients, repo: JobRepository) -> Iterator[Runtime]:
    with FakeWorld() as world, FakeChat() as chat:
        rt = Runtime(
            world.settings(
                settings,
                public_base_url="http://127.0.0.1:9/callback-base",
                telegram_api_url=chat.telegram_api_url,
                telegram_bot_token=SecretStr(DEFAULT_BOT_TOKEN),
                telegram_chat_id="-100123",
                external_timeout_seconds=2.0,
                external_max_attempts=1,
                alert_max_attempts=1,
            ),
            clients,
        )
        yield rt
    # The repo fixture deletes the rest; alert claims are the relay's own.
    clients.firestore.recursive_delete(repo.collection("alerts"))


@pytest.fixture
def endpoints(fuzz_runtime: Runtime) -> Iterator[Endpoints]:
    rt = fuzz_runtime
    rt.clients.point_at_emulators()
    bootstrap(rt.settings.google_cloud_project, prefix=rt.settings.topic_prefix)  # pull only
    relay = AlertRelay(rt.settings, channels_from_settings(rt.settings), RepositoryClaims(lambda: rt.repo))
    apps = {
        "webhook_intake": function_app(handle_webhook, rt, "intake"),
        "pipeline_worker": function_app(handle_push, rt, "worker"),
        "dlq_analyzer": function_app(handle_dead_letter, rt, "dlq"),
        "suno_callback": function_app(handle_suno_callback, rt, "suno_callback"),
        "sweeper": function_app(sweep, rt, "sweeper"),
        "suno_poller": function_app(poll, rt, "poller"),
        "api": create_api_app(rt),
        "alert_relay": create_relay_app(relay),
    }
    servers = {name: BackgroundServer(app) for name, app in apps.items()}
    try:
        yield Endpoints(rt=rt, urls={name: server.url for name, server in servers.items()})
    finally:
        for server in servers.values():
            server.stop()
