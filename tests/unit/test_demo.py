"""The local demo keeps showing every Music Clips path for as long as it runs: the fake Suno it
drives never runs dry, shows the low-credit refusal once, and keeps finishing (or hanging) tasks."""

from __future__ import annotations

from collections import Counter

from devtools.fakes.world import FakeWorld
from devtools.local.demo import LOW_CREDIT_TICKS, suno_faults
from services.external.suno import SunoClient
from services.settings import Settings


def test_the_demos_fake_suno_keeps_generating_past_200_runs_with_one_low_credit_episode():
    settings = Settings()
    needed = settings.suno_credits_per_generation
    outcomes: Counter[str] = Counter()
    refused_at: list[int] = []
    with FakeWorld() as world:
        suno = SunoClient(world.settings(settings, external_backoff_initial_seconds=0.01))
        try:
            for tick in range(1, 401):
                world.configure(suno=suno_faults(tick))
                # What runOnce does first (services/music_clips/service.py), then the worker.
                if suno.remaining_credits(max_attempts=1) < needed:
                    refused_at.append(tick)
                    continue
                task_id = suno.generate("demo", "http://127.0.0.1:9/cb")
                outcomes["never" if suno_faults(tick)["result"] == "never" else "success"] += 1
                assert task_id
            generations = world.stats()["calls"]["suno.generate"]
        finally:
            suno.close()
    assert generations > 200
    assert refused_at == list(LOW_CREDIT_TICKS)  # the 402 path, shown once
    assert outcomes["success"] > 200 and outcomes["never"] > 0  # successes and stuck ones, to the end
