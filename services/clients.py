"""Google Cloud clients, built lazily and once per instance (never at import time).

The same code talks to the emulators or to Google Cloud: the client libraries switch on
FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST themselves, which Settings also carries so that
tests can hand in their own.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from google.cloud import firestore, pubsub_v1  # type: ignore[attr-defined]


@dataclass
class Clients:
    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _firestore: firestore.Client | None = None
    _publisher: pubsub_v1.PublisherClient | None = None

    def point_at_emulators(self) -> None:
        # The Google libraries read these two variables, not our settings; copy them over so a
        # Settings object handed in by a test wins over whatever the process started with.
        if self.settings.firestore_emulator_host:
            os.environ["FIRESTORE_EMULATOR_HOST"] = self.settings.firestore_emulator_host
        if self.settings.pubsub_emulator_host:
            os.environ["PUBSUB_EMULATOR_HOST"] = self.settings.pubsub_emulator_host

    @property
    def firestore(self) -> firestore.Client:
        with self._lock:
            if self._firestore is None:
                from google.cloud import firestore

                self.point_at_emulators()
                self._firestore = firestore.Client(
                    project=self.settings.google_cloud_project, database=self.settings.firestore_database
                )
                bound_firestore_calls(self._firestore, self.settings.firestore_call_timeout_seconds)
            return self._firestore

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        with self._lock:
            if self._publisher is None:
                from google.cloud import pubsub_v1  # type: ignore[attr-defined]

                self.point_at_emulators()
                self._publisher = pubsub_v1.PublisherClient(
                    publisher_options=pubsub_v1.types.PublisherOptions(enable_open_telemetry_tracing=False)
                )
            return self._publisher

    def topic_path(self, name: str) -> str:
        return f"projects/{self.settings.google_cloud_project}/topics/{self.settings.topic_prefix}{name}"

    def close(self) -> None:
        with self._lock:
            if self._firestore is not None:
                self._firestore.close()
            if self._publisher is not None:
                self._publisher.stop()
            self._firestore = self._publisher = None


# Listen and Write are long-lived streams (default timeout a day); every other call defaults to 60-300 s.
_LONGEST_BOUNDED_DEFAULT_SECONDS = 300.0


def bound_firestore_calls(client: firestore.Client, seconds: float) -> None:
    """Every request-sized Firestore call gives up within ``seconds``, retries included.

    The library retries an unreachable Firestore for up to 300 s per call and has no public switch
    for those defaults, so they are set on its transport's table of wrapped methods, the table each
    call reads its default retry and timeout from. Calls given their own timeout keep it.
    """
    for call in client._firestore_api._transport._wrapped_methods.values():
        default = call._timeout
        if not isinstance(default, int | float) or default > _LONGEST_BOUNDED_DEFAULT_SECONDS:
            continue
        call._timeout = min(default, seconds)
        if call._retry is not None:
            call._retry = call._retry.with_timeout(seconds)


_clients: Clients | None = None
_clients_lock = threading.Lock()


def get_clients(settings: Settings | None = None) -> Clients:
    """The clients of this instance: one set, built on first use."""
    global _clients
    with _clients_lock:
        if _clients is None:
            _clients = Clients(settings or get_settings())
        return _clients
