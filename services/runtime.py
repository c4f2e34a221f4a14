"""Everything one instance needs, built lazily and once: settings, clients, store, outside clients.

Entry points call ``get_runtime()``; tests build ``Runtime(settings, clients)`` with emulator-backed
clients and hand it to the handlers directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from services.clients import Clients
from services.jobs.repository import JobRepository
from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.external.instagram import InstagramClient
    from services.external.processor import ProcessorClient
    from services.external.suno import SunoClient
    from services.external.video_source import VideoSourceClient
    from services.music_clips.credits import CreditGauge

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    clients: Clients
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _shared: dict[Callable[[Runtime], Any], Any] = field(default_factory=dict, repr=False)

    @cached_property
    def repo(self) -> JobRepository:
        return JobRepository(self.clients.firestore, self.settings)

    def shared(self, build: Callable[[Runtime], T]) -> T:
        """The one ``build(self)`` of this runtime: a stateful service (the worker, with its thread
        pools) built once. Keyed by ``build``, so the runtime needs no import of what it holds."""
        with self._lock:
            if build not in self._shared:
                self._shared[build] = build(self)
            built: T = self._shared[build]
            return built

    @cached_property
    def video_source(self) -> VideoSourceClient:
        from services.external.video_source import VideoSourceClient

        return VideoSourceClient(self.settings)

    @cached_property
    def processor(self) -> ProcessorClient:
        from services.external.processor import ProcessorClient

        return ProcessorClient(self.settings)

    @cached_property
    def instagram(self) -> InstagramClient:
        from services.external.instagram import InstagramClient

        return InstagramClient(self.settings)

    @cached_property
    def suno(self) -> SunoClient:
        from services.external.suno import SunoClient

        return SunoClient(self.settings)

    @cached_property
    def suno_credits(self) -> CreditGauge:
        from services.music_clips.credits import CreditGauge

        return CreditGauge(
            lambda timeout: self.suno.remaining_credits(max_attempts=1, timeout=timeout),
            budget_seconds=self.settings.suno_credit_check_timeout_seconds,
            ttl_seconds=self.settings.suno_credit_cache_seconds,
        )


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings = get_settings()
            _runtime = Runtime(settings, Clients(settings))
        return _runtime
