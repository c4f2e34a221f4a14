"""The dead-letters page in a real browser (Debian's Chromium, Playwright) on the whole local stack.

A poison video (the fake source crashes on URLs containing "poison") is delivered until Pub/Sub
dead-letters it; its owner finds it on the dead-letters page from the header's DLQ count, previews
a replay, fixes its input in the editor (refused by field first, then the diff), saves and
replays it, and the job succeeds. Screenshots at desktop and phone width go to artifacts/e2e/.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from devtools.local.stack import LocalStack
from tests.e2e.support import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    WAIT_MS,
    admin_headers,
    api_job,
    nothing_cut_off,
    post_video,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

# Five deliveries with the stack's 2-10 s backoff, each retrying the source a few times.
DEAD_LETTERING_S = 240


# Content wider than its box (a long word that does not wrap) is clipped or spills over a neighbour.
# A text field is left out: it scrolls its own value by design (a URL is wider than a phone), and
# its box being on screen is what nothing_cut_off checks. Measured in one step, so no re-layout
# between elements can mix two states of the page.
OVERFLOWING = """selectors => selectors.flatMap(selector => [...document.querySelectorAll(selector)]
    .filter(node => !node.matches("input, textarea, select") && node.scrollWidth > node.clientWidth + 1)
    .map(node => `${selector}: ${JSON.stringify(node.textContent)}`))"""


def assert_fits_phone(page: Page, selectors: tuple[str, ...], name: str) -> None:
    """At phone width nothing scrolls sideways, every element is on screen, and each holds its
    content (no value clipped inside its cell)."""
    page.set_viewport_size(PHONE)
    nothing_cut_off(page, selectors)
    assert page.evaluate(OVERFLOWING, list(selectors)) == [], "content overflows its box"
    page.screenshot(path=ARTIFACTS / f"{name}-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def api_audit(stack: LocalStack, target: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{stack.url('api')}/api/audit", params={"target": target}, headers=admin_headers(), timeout=10
    )
    response.raise_for_status()
    return list(response.json()["audit"])


def test_a_poison_job_is_fixed_in_the_editor_replayed_from_the_dead_letters_page_and_succeeds(
    stack, open_page
):
    poison_url = f"https://videos.example/poison-{uuid.uuid4().hex[:6]}.mp4"
    job_id = post_video(stack, "dora", video_url=poison_url)
    wait_for(
        lambda: (api_job(stack, job_id).get("error") or {}).get("code") == "DEAD_LETTERED",
        timeout=DEAD_LETTERING_S,
        interval=1.0,
        what="the poison job to be dead-lettered",
    )

    page = open_page("dora")
    page.click("#m-dlq")  # the header's DLQ count links to the page
    expect(page).to_have_url(f"{stack.url('api')}/dead-letters")
    letter = page.locator(f'#letters tbody tr[data-job-id="{job_id}"]')
    expect(letter).to_be_visible(timeout=WAIT_MS)
    cause = api_job(stack, job_id)["error"]["cause"]
    expect(letter.locator('td[data-label="error code"]')).to_have_text(cause)

    # Grouped with counts; a group is a filter, kept in the URL.
    expect(page.locator('#g-pipeline button[data-value="video"] .count')).to_have_text("1")
    page.click(f'#g-cause button[data-value="{cause}"]')
    expect(page).to_have_url(f"{stack.url('api')}/dead-letters?cause={cause}")
    expect(page.locator(f'#g-cause button[data-value="{cause}"]')).to_have_attribute("aria-pressed", "true")
    expect(letter).to_be_visible()

    # A preview says how many jobs and which subscriptions, before anything is replayed.
    letter.locator("input.pick").check()
    expect(page.locator("#replay-selected")).to_have_text("Replay selected (1)")
    page.click("#replay-selected")
    expect(page.locator("#preview-text")).to_contain_text("Replay 1 job(s)? video: 1")
    expect(page.locator('#preview-subs li[data-subscription="video-worker"]')).to_contain_text("1 job(s)")
    page.screenshot(path=ARTIFACTS / "dead-letters-desktop.png", full_page=True)
    assert_fits_phone(
        page,
        ("#card-groups", "#card-list", "#letters td", ".group", "#actions button", "#preview button"),
        "dead-letters",
    )
    page.click("#preview-cancel")
    expect(page.locator("#preview")).to_be_hidden()
    assert api_job(stack, job_id)["attempt"] == 1  # nothing replayed without a confirmation

    # The editor refuses a bad input field by field, then shows the diff of a good one.
    letter.locator("button.edit").click()
    expect(page.locator("#editor")).to_be_visible()
    expect(page.locator("#ed-field-videoUrl")).to_have_value(poison_url)
    page.fill("#ed-field-videoUrl", "not a url")
    page.fill("#ed-new-name", "captoin")  # a typo: the model takes no such field
    page.click("#ed-add-field")
    page.fill("#ed-field-captoin", "typo")
    page.click("#ed-check")
    for field in ("videoUrl", "captoin"):
        expect(page.locator(f'.ed-field[data-field="{field}"] .field-error')).not_to_be_empty()
    expect(page.locator("#ed-save-replay")).to_be_disabled()
    page.locator("#editor").screenshot(path=ARTIFACTS / "dead-letter-editor-errors.png")
    page.click('.ed-field[data-field="captoin"] .ed-remove')

    fixed_url = poison_url.replace("poison", "clip")
    page.fill("#ed-field-videoUrl", fixed_url)
    page.click("#ed-check")
    change = page.locator('#ed-diff tr[data-field="videoUrl"]')
    expect(change.locator("td.before")).to_have_text(poison_url)
    expect(change.locator("td.after")).to_have_text(fixed_url)
    expect(page.locator('.ed-field[data-field="videoUrl"] .field-error')).to_be_empty()
    page.locator("#editor").screenshot(path=ARTIFACTS / "dead-letter-editor-desktop.png")
    assert_fits_phone(
        page,
        ("#editor", ".ed-field input", ".ed-field button", "#ed-add", "#ed-diff td", "#ed-buttons button"),
        "dead-letter-editor",
    )
    # Nothing covers the list: the editor comes below it.
    listing, editor = page.locator("#card-list").bounding_box(), page.locator("#editor").bounding_box()
    assert listing and editor and editor["y"] >= listing["y"] + listing["height"]
    assert api_job(stack, job_id)["input"]["videoUrl"] == poison_url  # checked, not saved

    page.click("#ed-save-replay")
    expect(page.locator("#ed-result")).to_contain_text("Saved and replayed", timeout=WAIT_MS)
    expect(page.locator("#progress")).to_have_attribute("data-state", "done")
    expect(page.locator("#progress-text")).to_contain_text("1 of 1: replayed 1")
    expect(letter).to_be_hidden()

    page.click("#ed-job-link")
    expect(page.locator("#j-id")).to_have_text(job_id)
    expect(page.locator("#j-badge")).to_have_text("succeeded", timeout=WAIT_MS)
    job = api_job(stack, job_id)
    assert (job["attempt"], job["input"]["videoUrl"], job["error"]) == (2, fixed_url, None)

    audit = api_audit(stack, job_id)
    edit = next(a for a in audit if a["action"] == "dlq.edit_input")
    assert (edit["actor"], edit["params"]["before"]["videoUrl"], edit["params"]["after"]["videoUrl"]) == (
        "user:dora",
        poison_url,
        fixed_url,
    )
    assert [a["result"] for a in audit if a["action"] == "dlq.replay"] == [f"ok; job {job_id} attempt 2"]
