"""Shared fixtures. The emulators start once per session, only when a test asks for them.

Set JOBTRAIL_TEST_PROJECT (and leave the *_EMULATOR_HOST variables unset) to run the same suite
against a real project instead: the fixtures then skip starting emulators.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from infra import emulators as emu
from services.clients import Clients
from services.jobs.repository import JobRepository
from services.settings import Settings

PROJECT = os.environ.get("JOBTRAIL_TEST_PROJECT", "jobtrail-test")


@pytest.fixture(scope="session")
def emulator_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, emu.Emulator]]:
    """Both emulators for the whole session; a missing gcloud or Java fails here, loudly."""
    if "JOBTRAIL_TEST_PROJECT" in os.environ:
        yield {}
        return
    with (
        emu.running(project=PROJECT, log_dir=tmp_path_factory.mktemp("emulators")) as started,
        pytest.MonkeyPatch.context() as mp,
    ):
        for e in started.values():
            mp.setenv(e.env_var, e.host)
        yield started


@pytest.fixture
def settings(emulator_hosts: dict[str, emu.Emulator]) -> Settings:
    """Settings for one test: its own collection and topic prefix, so tests never share state."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        google_cloud_project=PROJECT,
        firestore_emulator_host=emulator_hosts["firestore"].host if emulator_hosts else None,
        pubsub_emulator_host=emulator_hosts["pubsub"].host if emulator_hosts else None,
        collection_prefix=f"t{suffix}_",
        topic_prefix=f"t{suffix}-",
        metrics_exporter="none",
    )


@pytest.fixture
def clients(settings: Settings) -> Iterator[Clients]:
    c = Clients(settings)
    yield c
    c.close()


@pytest.fixture
def repo(clients: Clients, settings: Settings) -> Iterator[JobRepository]:
    repository = JobRepository(clients.firestore, settings)
    yield repository
    for name in ("jobs", "idempotency", "executions", "queues", "audit"):
        clients.firestore.recursive_delete(repository.collection(name))
