"""What the end-to-end tests share besides fixtures (tests/e2e/conftest.py): the browser's flags,
how long to wait, phone width, and helpers that drive the local stack from outside."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Page, ViewportSize

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
VIDEO_STAGES = ["received", "downloading", "downloaded", "processing", "processed", "publishing", "published"]
# Every outside call takes a while, so each stage is on screen long enough to be seen.
SLOW_WORLD = {
    "video": {"latency_ms": 1200},
    "processor": {"latency_ms": 1200},
    "instagram": {"latency_ms": 1200},
}

# Records, for every row, the distinct stages the table showed, in order: proof that the row
# changed in place (no reload: the recorder would be gone) and walked through its stages.
RECORDER = """
() => {
  window.__noReload = true;
  window.__stages = {};
  const record = () => {
    for (const row of document.querySelectorAll('#jobs tbody tr')) {
      const id = row.dataset.jobId;
      const stage = row.querySelector('td[data-col="stage"]').textContent;
      const seen = (window.__stages[id] = window.__stages[id] || []);
      if (seen[seen.length - 1] !== stage) seen.push(stage);
    }
  };
  new MutationObserver(record).observe(document.querySelector('#jobs tbody'),
    { subtree: true, childList: true, characterData: true });
  record();
}
"""


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


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(Settings(), 'e2e-check', 'admin')}"}


def api_job(stack: LocalStack, job_id: str) -> dict[str, Any]:
    response = requests.get(f"{stack.url('api')}/api/jobs/{job_id}", headers=admin_headers(), timeout=10)
    response.raise_for_status()
    return dict(response.json())


def api_timeline(stack: LocalStack, job_id: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{stack.url('api')}/api/jobs/{job_id}/events", headers=admin_headers(), timeout=10
    )
    response.raise_for_status()
    return list(response.json()["stages"])


def row(page: Page, job_id: str) -> Any:
    return page.locator(f'#jobs tbody tr[data-job-id="{job_id}"]')


def cell(page: Page, job_id: str, column: str) -> Any:
    return row(page, job_id).locator(f'td[data-col="{column}"]')


def nothing_cut_off(page: Page, selectors: tuple[str, ...]) -> None:
    """At the page's current width: no sideways scroll, and every element of ``selectors`` lies
    wholly on screen (not clipped by a table that scrolls sideways, not pushed off the edge)."""
    width = page.viewport_size["width"] if page.viewport_size else PHONE["width"]
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{page.url} scrolls sideways at {width} px"
    for selector in selectors:
        for box in (item.bounding_box() for item in page.locator(selector).all() if item.is_visible()):
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, selector
