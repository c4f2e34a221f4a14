"""Session fixtures of the deployment contract test: Terraform's rendered environments and the
emulators the services start against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import emulators
from infra.bootstrap import bootstrap
from tests.contract.terraform_env import ServiceEnv, render


@pytest.fixture(scope="session")
def terraform_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ServiceEnv]:
    return render(tmp_path_factory.mktemp("terraform"))


@pytest.fixture(scope="session")
def emulator_hosts(
    terraform_services: dict[str, ServiceEnv], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Firestore and Pub/Sub emulators, with the topics and subscriptions of the rendered project
    and prefix (what Terraform creates in the cloud)."""
    any_service = next(iter(terraform_services.values()))
    project = any_service.values["GOOGLE_CLOUD_PROJECT"]
    with emulators.running(project, log_dir=Path(tmp_path_factory.mktemp("emulators"))) as running:
        hosts = {
            "FIRESTORE_EMULATOR_HOST": running["firestore"].host,
            "PUBSUB_EMULATOR_HOST": running["pubsub"].host,
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, host in hosts.items():
                patch.setenv(name, host)  # the bootstrap's own clients
            bootstrap(project, prefix=any_service.values["TOPIC_PREFIX"])
        yield hosts
