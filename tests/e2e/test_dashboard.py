"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) on the whole local
stack: emulators, fake outside world, every entry point as its own functions-framework process.

Jobs are created by signed webhooks after the page is open, so everything the page shows about
them reached it over the live stream. Screenshots go to artifacts/e2e/ (gitignored).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.support import (
    ARTIFACTS,
    NO_SIDEWAYS_SCROLL,
    PHONE,
    VIDEO_STAGES,
    WAIT_MS,
    api_job,
    api_timeline,
    cell,
    post_video,
    row,
    world,
)

pytestmark = pytest.mark.e2e


# ---- the tests -------------------------------------------------------------------------------------
def test_a_new_job_appears_on_top_and_walks_through_its_stages_without_a_reload(stack, open_page):
    page = open_page("ops", "admin")
    expect(page.locator("#queues")).to_be_visible()

    job_id = post_video(stack, "alice")

    expect(row(page, job_id)).to_be_visible(timeout=WAIT_MS)
    assert page.locator("#jobs tbody tr").first.get_attribute("data-job-id") == job_id
    page.screenshot(path=ARTIFACTS / "new-job-appears.png")
    row(page, job_id).click()
    expect(page.locator("#detail")).to_be_visible()
    expect(cell(page, job_id, "stage")).to_have_text("published", timeout=WAIT_MS)
    expect(cell(page, job_id, "status")).to_have_text("succeeded")

    shown = page.evaluate("id => window.__stages[id]", job_id)
    assert page.evaluate("window.__noReload") is True
    assert shown[-1] == "published" and shown == sorted(shown, key=VIDEO_STAGES.index)
    # It moved through intermediate stages on screen, not from first to last in one step.
    assert len([s for s in shown if s not in ("received", "published")]) >= 2, shown
    expect(page.locator("#d-timeline .tl-row")).to_have_count(
        len(api_timeline(stack, job_id)), timeout=WAIT_MS
    )
    page.screenshot(path=ARTIFACTS / "job-published.png")


def test_cancel_from_the_page_takes_effect(stack, open_page):
    page = open_page("ops", "admin")
    # Pause the video queue from the header, so the new job waits in "queued" to be cancelled.
    page.click('button[data-queue="video-worker"][data-action="pause"]')
    expect(page.locator('button[data-queue="video-worker"]')).to_have_attribute("data-action", "resume")

    job_id = post_video(stack, "alice")
    expect(cell(page, job_id, "status")).to_have_text("queued", timeout=WAIT_MS)
    row(page, job_id).click()
    expect(page.locator("#btn-cancel")).to_be_visible()
    page.click("#btn-cancel")

    expect(cell(page, job_id, "status")).to_have_text("cancelled", timeout=WAIT_MS)
    expect(page.locator("#btn-cancel")).to_be_hidden()
    assert api_job(stack, job_id)["status"] == "cancelled"
    page.screenshot(path=ARTIFACTS / "job-cancelled.png")

    page.click('button[data-queue="video-worker"][data-action="resume"]')
    expect(page.locator('button[data-queue="video-worker"]')).to_have_attribute("data-action", "pause")
    # The held message is delivered now; a cancelled job stays cancelled.
    later = post_video(stack, "alice")
    expect(cell(page, later, "status")).to_have_text("succeeded", timeout=WAIT_MS)
    assert api_job(stack, job_id)["status"] == "cancelled"


def test_retry_from_the_page_takes_effect(stack, open_page):
    page = open_page("ops", "admin")
    world(stack, {"video": {"permanent_failure": True}})
    try:
        job_id = post_video(stack, "alice")
        expect(cell(page, job_id, "status")).to_have_text("failed", timeout=WAIT_MS)
    finally:
        world(stack, {"video": {"permanent_failure": False}})
    row(page, job_id).click()
    expect(page.locator("#d-error")).to_contain_text("REJECTED")
    expect(page.locator("#btn-retry")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "job-failed.png")

    page.click("#btn-retry")

    expect(cell(page, job_id, "attempt")).to_have_text("2", timeout=WAIT_MS)
    expect(cell(page, job_id, "status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#d-timeline .tl-attempt")).to_have_text("attempt 2", timeout=WAIT_MS)
    assert api_job(stack, job_id)["attempt"] == 2
    page.screenshot(path=ARTIFACTS / "job-retried.png")


def test_a_user_sees_only_their_own_jobs(stack, open_page):
    others = [post_video(stack, "bob"), post_video(stack, "bob")]
    mine = post_video(stack, "carol")
    page = open_page("carol")
    expect(row(page, mine)).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#queues")).to_be_hidden()  # queue controls are for admins

    # Live: bob's next job is committed first, carol's after it; only carol's may arrive.
    others.append(post_video(stack, "bob"))
    newest = post_video(stack, "carol")
    expect(row(page, newest)).to_be_visible(timeout=WAIT_MS)
    expect(cell(page, newest, "status")).to_have_text("succeeded", timeout=WAIT_MS)

    users = page.locator('#jobs tbody td[data-col="userId"]').all_text_contents()
    assert users and set(users) == {"carol"}
    seen = page.evaluate("Object.keys(window.__stages)")
    assert not set(others) & set(seen)
    # Looking one of bob's jobs up by id finds nothing either.
    page.fill("#f-search", others[0])
    page.press("#f-search", "Enter")
    expect(page.locator("#jobs-message")).to_have_text(f"No job {others[0]}.")
    page.screenshot(path=ARTIFACTS / "user-view.png")


def test_the_sign_in_link_signs_in_once_and_leaves_no_code_in_the_url(stack, browser):
    link = stack.login_link("linda", "admin")
    assert "#login=" in link and "eyJ" not in link  # a code, not a JWT
    first = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    first.goto(link)
    expect(first.locator("#live")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    expect(first.locator("#who-name")).to_have_text("linda")
    assert "login=" not in first.url
    first.screenshot(path=ARTIFACTS / "signed-in-by-link.png")

    second = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    second.goto(link)
    expect(second.locator("#login")).to_be_visible()
    expect(second.locator("#login-error")).to_contain_text("already used or has expired")
    expect(second.locator("#app")).to_be_hidden()
    first.context.close()
    second.context.close()


# ---- the job page -------------------------------------------------------------------------------
def test_a_job_page_opened_by_its_url_shows_log_lines_while_the_job_runs(stack, open_page):
    page = open_page("ops", "admin")
    job_id = post_video(stack, "alice")
    page.goto(f"{stack.url('api')}/jobs/{job_id}")

    expect(page.locator("#j-id")).to_have_text(job_id)
    expect(page.locator("#logs-state")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    expect(page.locator("#logs li").first).to_be_visible(timeout=WAIT_MS)
    # The first lines are on screen before the job is done: they came live, not after the fact.
    assert api_job(stack, job_id)["status"] in ("queued", "running")
    page.screenshot(path=ARTIFACTS / "job-page-running.png", full_page=True)
    seen_while_running = page.locator("#logs li").count()

    expect(page.locator("#j-badge")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#logs-state")).to_have_attribute("data-state", "ended", timeout=WAIT_MS)
    assert page.locator("#logs li").count() > seen_while_running
    expect(page.locator("#j-situation")).to_have_attribute("data-kind", "finished")
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#attempts tbody tr td").nth(1)).to_have_text("success")
    expect(page.locator("#timeline .stage-row")).to_have_count(len(api_timeline(stack, job_id)))
    expect(page.locator("#link-logs")).to_have_attribute("href", api_job(stack, job_id)["links"]["logs"])
    expect(page.locator("#cost tr.total")).to_be_visible()
    assert "videoUrl" in page.locator("#j-input").text_content()
    page.screenshot(path=ARTIFACTS / "job-page-desktop.png", full_page=True)

    page.set_viewport_size(PHONE)
    assert page.evaluate(NO_SIDEWAYS_SCROLL), "the job page scrolls sideways at phone width"
    # Every value on screen, none clipped by a table that scrolls sideways. Measured in one step in
    # the page: the page redraws its tables every few seconds, and an element measured one by one
    # from here may be replaced between two measurements.
    boxes = page.evaluate(
        """(selectors) => selectors.flatMap((s) => [...document.querySelectorAll(s)].map((e) => {
            const r = e.getBoundingClientRect();
            return { selector: s, x: r.x, width: r.width };
        }))""",
        ["#card-attempts", "#card-logs", "#card-timeline", "#attempts td", "#timeline td", "#logs li"],
    )
    assert boxes
    for box in boxes:
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    page.screenshot(path=ARTIFACTS / "job-page-phone.png", full_page=True)


def test_the_table_links_each_job_to_its_page(stack, open_page):
    page = open_page("ops", "admin")
    job_id = post_video(stack, "alice")
    expect(row(page, job_id)).to_be_visible(timeout=WAIT_MS)
    row(page, job_id).click()
    page.click("#link-job-page")
    expect(page).to_have_url(f"{stack.url('api')}/jobs/{job_id}")
    expect(page.locator("#j-id")).to_have_text(job_id)


def test_a_user_opening_another_users_job_page_finds_nothing(stack, open_page):
    theirs = post_video(stack, "bob")
    page = open_page("carol")
    page.goto(f"{stack.url('api')}/jobs/{theirs}")
    expect(page.locator("#j-message")).to_have_text(f"No job {theirs}.")
    expect(page.locator("#card-logs")).to_be_hidden()
    expect(page.locator("#logs li")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "job-page-not-yours.png")


def test_the_dashboard_at_phone_width_cuts_nothing_off_and_covers_nothing(stack, open_page):
    page = open_page("ops", "admin")
    job_id = post_video(stack, "alice")
    expect(row(page, job_id)).to_be_visible(timeout=WAIT_MS)
    page.screenshot(path=ARTIFACTS / "dashboard-desktop.png")
    page.set_viewport_size(PHONE)
    row(page, job_id).click()
    expect(page.locator("#detail")).to_be_visible()
    expect(cell(page, job_id, "status")).to_have_text("succeeded", timeout=WAIT_MS)
    assert page.evaluate(NO_SIDEWAYS_SCROLL), "the dashboard scrolls sideways at phone width"
    # The panel is below the table, not over it, and every value and button in it is on screen.
    table, detail = page.locator("#jobs").bounding_box(), page.locator("#detail").bounding_box()
    assert table and detail and detail["y"] >= table["y"] + table["height"] - 1
    for selector in ("#jobs td", "#d-ids dd", "#d-ids button", "#d-links a", "#logout"):
        for box in (item.bounding_box() for item in page.locator(selector).all()):
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    page.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)
