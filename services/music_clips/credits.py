"""Suno's credit balance as runOnce sees it: asked within a small budget, remembered briefly.

Seed 002 wants runOnce's 202 within 2 s and a 402 when Suno cannot pay for a generation. Suno's
credit endpoint is not always quick, and is sometimes down, so runOnce never waits on it for long:

- a check gets ``suno_credit_check_timeout_seconds`` (0.5 s) and one attempt;
- its answer is reused for ``suno_credit_cache_seconds`` (30 s) by this instance, and so is a check
  that could not tell ("unknown"), so a slow or down Suno costs one budgeted wait per 30 s, not one
  per run;
- while one request refreshes the balance, the others use the last answer instead of queueing.

An unknown balance lets the run through: the worker's generate is refused for credits then, and
the job fails with SUNO_NO_CREDITS (GET /jobs/{jobId} shows it). A cached balance may be up to 30 s
old; the same refusal covers the runs that outspend it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.external.resilience import ExternalError
from services.telemetry.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class _Reading:
    credits: int | None  # None: Suno could not tell in time
    at: float


class CreditGauge:
    def __init__(
        self,
        ask: Callable[[float], int],
        *,
        budget_seconds: float,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ask(timeout)`` asks Suno for its balance once, within ``timeout`` seconds."""
        self._ask = ask
        self._budget = budget_seconds
        self._ttl = ttl_seconds
        self._clock = clock
        self._last: _Reading | None = None
        self._refreshing = threading.Lock()

    def credits_left(self) -> int | None:
        """Suno's balance, or None if it cannot be told within the budget."""
        last = self._last
        if last is not None and self._clock() - last.at < self._ttl:
            return last.credits
        if not self._refreshing.acquire(blocking=False):
            return last.credits if last is not None else None
        try:
            try:
                credits: int | None = self._ask(self._budget)
            except ExternalError as exc:
                log.warning("Suno credit check failed (%s); runs are queued without it", exc.code)
                credits = None
            self._last = _Reading(credits, self._clock())
            return credits
        finally:
            self._refreshing.release()
