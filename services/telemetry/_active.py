"""Which Telemetry this process reports to right now.

A stack rather than one global: ``setup_telemetry`` puts the process's own at the bottom for good,
and a test can push a fresh one (in-memory spans, its own Prometheus registry) for the length of a
test, so module-level tracers and ``get_metrics()`` follow it without being rebuilt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.telemetry import Telemetry

_stack: list[Telemetry] = []
# Re-entrant: building the first Telemetry may ask who is current (it is: nobody yet).
_lock = threading.RLock()


def current() -> Telemetry | None:
    with _lock:
        return _stack[-1] if _stack else None


def push(telemetry: Telemetry) -> None:
    with _lock:
        _stack.append(telemetry)


def remove(telemetry: Telemetry) -> None:
    with _lock:
        for index in range(len(_stack) - 1, -1, -1):
            if _stack[index] is telemetry:
                del _stack[index]
                return


def current_or_install(create: Callable[[], Telemetry]) -> tuple[Telemetry, bool]:
    """The current Telemetry, or a new one from ``create`` installed for good (True) if none is."""
    with _lock:
        if _stack:
            return _stack[-1], False
        telemetry = create()
        _stack.insert(0, telemetry)
        return telemetry, True
