"""What the browser tests share: where screenshots go, how long to wait, the phone viewport, and
small calls on the local stack (the fake world's controls, a signed webhook, the API as an admin)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import ViewportSize

from devtools.local.stack import LocalStack
from services.auth import mint_token
from services.intake import SIGNATURE_HEADER, sign
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous: the stack's Pub/Sub push, worker and fakes run on two cores.
WAIT_MS = 90_000
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"


def world(stack: LocalStack, changes: dict[str, Any]) -> None:
    requests.post(f"{stack.url('fake_world')}/_control", json=changes, timeout=10).raise_for_status()


def post_video(stack: LocalStack, user: str, *, video_url: str | None = None) -> str:
    body = json.dumps(
        {
            "accountId": f"acc-{user}",
            "scenarioId": "e2e",
            "sourceId": f"src-{uuid.uuid4().hex[:8]}",
            "userId": user,
            "deliveryId": uuid.uuid4().hex,
            "videoUrl": video_url or f"https://videos.example/clip-{uuid.uuid4().hex[:6]}.mp4",
            "caption": "e2e",
        }
    ).encode()
    secret = Settings().webhook_hmac_secret.get_secret_value()
    response = requests.post(
        stack.url("webhook_intake"),
        data=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


def api_get(stack: LocalStack, path: str, **params: Any) -> dict[str, Any]:
    token = mint_token(Settings(), "e2e-check", "admin")
    response = requests.get(
        f"{stack.url('api')}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    response.raise_for_status()
    return dict(response.json())


def api_job(stack: LocalStack, job_id: str) -> dict[str, Any]:
    return api_get(stack, f"/api/jobs/{job_id}")


# Content wider than its box (a long word that does not wrap) is clipped or spills over a neighbour.
OVERFLOWS = "node => node.scrollWidth > node.clientWidth + 1"


def within_width(page: Any, selectors: tuple[str, ...], width: int) -> None:
    """Every element each selector finds is on screen horizontally and holds its content: nothing
    is cut off at ``width``."""
    for selector in selectors:
        for item in page.locator(selector).all():
            box = item.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, selector
            assert not item.evaluate(OVERFLOWS), f"{selector}: {item.text_content()!r} overflows its box"
