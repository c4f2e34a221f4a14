"""Demo traffic for the local stack: jobs flowing, some failing, some going stale, some dead-lettered.

Video webhooks (a few poison ones that dead-letter) and Music Clips runs from two users, with the
fake world's faults set so that every path the dashboard shows happens within minutes.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable

import requests

from services.auth.credentials import mint_token
from services.intake import SIGNATURE_HEADER, sign
from services.settings import Settings

USERS = ("alice", "bob")
ACCOUNTS = {"alice": "acc-alice", "bob": "acc-bob"}
# The faults the demo runs under: retries happen, a few jobs fail for good.
WORLD_FAULTS = {
    "processor": {"failure_rate": 0.05, "latency_ms": 1500},
    "video": {"latency_ms": 400},
    "instagram": {"failure_rate": 0.05, "latency_ms": 300},
    "suno": {"callback_delay_s": 8.0},
}


# The fake Suno charges a credit per generation and runOnce refuses a run below
# suno_credits_per_generation (12), so left alone it runs dry after ~90 runs and every later run is
# SUNO_NO_CREDITS. The demo tops it up on every tick instead, except for one low-credit episode
# (about three minutes in, for half a minute at the default pace) that shows the 402 path once.
TOP_UP_CREDITS = 10_000
LOW_CREDIT_TICKS = range(90, 105)


def suno_faults(tick: int) -> dict[str, object]:
    """The fake Suno's faults for demo tick ``tick``: every Music Clips path, for as long as it runs."""
    # Every few minutes Suno stops finishing tasks for a while: those jobs go stale, then time out.
    never = (tick // 120) % 3 == 2
    return {
        "result": "never" if never else "success",
        "credits": 0 if tick in LOW_CREDIT_TICKS else TOP_UP_CREDITS,
    }


class DemoTraffic:
    def __init__(self, url: Callable[[str], str], *, jobs_per_second: float = 0.5, seed: int = 7) -> None:
        self.url = url  # a service's base URL by name (the local stack's)
        # The stack's processes read these same defaults (no JWT_SECRET / WEBHOOK_HMAC_SECRET set).
        settings = Settings()
        self._webhook_secret = settings.webhook_hmac_secret.get_secret_value()
        self.admin_token = mint_token(settings, "demo-admin", "admin", ttl_seconds=12 * 3600)
        self.user_tokens = {u: mint_token(settings, u, "user", ttl_seconds=12 * 3600) for u in USERS}
        self._interval = 1.0 / jobs_per_second
        self._rng = random.Random(seed)
        self._sent: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> None:
        requests.post(f"{self.url('fake_world')}/_control", json=WORLD_FAULTS, timeout=10).raise_for_status()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> str:
        return "demo traffic sent: " + ", ".join(f"{k}={v}" for k, v in sorted(self._sent.items()))

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(self._interval):
            tick += 1
            try:
                self._one(tick)
            except requests.RequestException as exc:
                self._sent["errors"] += 1
                print(f"demo: {type(exc).__name__}")

    def _one(self, tick: int) -> None:
        user = self._rng.choice(USERS)
        requests.post(f"{self.url('fake_world')}/_control", json={"suno": suno_faults(tick)}, timeout=10)
        roll = self._rng.random()
        if roll < 0.3:
            self.run_music(user)
        else:
            self.post_video(user, poison=roll > 0.96)

    def post_video(self, user: str, *, poison: bool = False) -> dict[str, object]:
        name = "poison" if poison else "clip"
        body = json.dumps(
            {
                "accountId": ACCOUNTS[user],
                "scenarioId": self._rng.choice(["reels", "shorts"]),
                "sourceId": f"src-{uuid.uuid4().hex[:8]}",
                "userId": user,
                "deliveryId": uuid.uuid4().hex,
                "videoUrl": f"https://videos.example/{name}-{uuid.uuid4().hex[:6]}.mp4",
                "caption": "demo",
            }
        ).encode()
        response = requests.post(
            self.url("webhook_intake"),
            data=body,
            timeout=30,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._webhook_secret, body)},
        )
        self._sent["video_poison" if poison else "video"] += 1
        return dict(response.json())

    def run_music(self, user: str) -> dict[str, object]:
        channel = f"channel-{self._rng.randint(1, 3)}"
        response = requests.post(
            f"{self.url('api')}/api/music-clips/channels/{channel}/runOnce",
            json={"userId": user},
            timeout=30,
            headers={"Authorization": f"Bearer {self.user_tokens[user]}"},
        )
        self._sent["music"] += 1
        return dict(response.json())
