"""runOnce's view of Suno's balance: a budgeted ask, remembered for a while, never queued behind."""

from __future__ import annotations

import threading

from services.external.resilience import RetryableExternalError
from services.music_clips.credits import CreditGauge


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gauge(ask, clock: Clock) -> CreditGauge:
    return CreditGauge(ask, budget_seconds=0.5, ttl_seconds=30, clock=clock)


def test_a_balance_is_asked_with_the_budget_and_reused_until_it_is_old():
    asked: list[float] = []
    clock = Clock()
    credits = gauge(lambda timeout: asked.append(timeout) or 40, clock)
    assert credits.credits_left() == 40 and asked == [0.5]
    clock.now = 29.9
    assert credits.credits_left() == 40 and asked == [0.5]
    clock.now = 30.0
    assert credits.credits_left() == 40 and asked == [0.5, 0.5]


def test_a_suno_that_cannot_tell_is_asked_once_per_ttl_and_reads_unknown():
    asked = []

    def down(timeout: float) -> int:
        asked.append(timeout)
        raise RetryableExternalError("SUNO_TIMEOUT", "Suno did not answer within 0.5s", service="Suno")

    clock = Clock()
    credits = gauge(down, clock)
    assert [credits.credits_left() for _ in range(50)] == [None] * 50
    assert len(asked) == 1


def test_while_one_request_refreshes_the_others_use_the_last_answer_at_once():
    clock = Clock()
    answers = iter([7, 3])
    asking, release = threading.Event(), threading.Event()

    def slow(timeout: float) -> int:
        value = next(answers)
        if value == 3:
            asking.set()
            release.wait(5)
        return value

    credits = gauge(slow, clock)
    assert credits.credits_left() == 7
    clock.now = 31
    refresher = threading.Thread(target=credits.credits_left)
    refresher.start()
    assert asking.wait(5)
    assert credits.credits_left() == 7  # not queued behind the refresh
    release.set()
    refresher.join(5)
    assert credits.credits_left() == 3
