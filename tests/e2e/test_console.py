"""The operator console in Chromium on the whole local stack: bulk retry and cancel by filter
(two operators at once, each job acted on once), the audit page, the CSV export of a 1,000-job
filter, views kept in the URL, and a plain user who cannot see or reach any of it for another
user's jobs. Jobs are seeded straight into Firestore through the repository, which is fast; what
the page does with them goes through the API like any click. Screenshots of every page at desktop
and at phone width go to artifacts/e2e/."""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from playwright.sync_api import Page, expect

from devtools.local.stack import PROJECT, LocalStack
from services.clients import Clients
from services.jobs.models import JobCreate, JobError
from services.jobs.repository import JobRepository, QuerySpec
from services.jobs.state_machine import Transition
from services.pipelines.spec import JobStatus
from services.settings import Settings
from tests.e2e.support import ARTIFACTS, DESKTOP, PHONE, WAIT_MS, admin_headers, nothing_cut_off

pytestmark = pytest.mark.e2e

# Records every text the bulk panel's status line showed and every value of its progress bar.
PROGRESS_RECORDER = """
() => {
  window.__bulk = [];
  const record = () => window.__bulk.push({
    text: document.querySelector('#bulk-status').textContent,
    value: document.querySelector('#bulk-progress').value,
    max: document.querySelector('#bulk-progress').max,
  });
  new MutationObserver(record).observe(document.querySelector('#bulk'),
    { subtree: true, childList: true, characterData: true, attributes: true });
}
"""


@pytest.fixture(scope="module")
def repo(stack: LocalStack) -> Iterator[JobRepository]:
    """The stack's own Firestore, for seeding jobs and checking what the page did."""
    settings = Settings(
        google_cloud_project=PROJECT,
        firestore_emulator_host=stack.emulators["firestore"].host,
        pubsub_emulator_host=stack.emulators["pubsub"].host,
        metrics_exporter="none",
    )
    clients = Clients(settings)
    yield JobRepository(clients.firestore, settings)
    clients.close()


def seed(repo: JobRepository, n: int, *, user: str, account: str, failed: bool = False) -> list[str]:
    def one(i: int) -> str:
        job, _ = repo.create_job(
            JobCreate(
                pipeline="video",
                account_id=account,
                scenario_id="console",
                source_id=f"{account}-{i}",
                user_id=user,
                input={"videoUrl": f"https://videos.example/{account}-{i}.mp4"},
            )
        )
        if failed:
            repo.transition(job.job_id, Transition("downloading", actor="worker"))
            error = JobError(code="REJECTED", message="the source refused", retryable=True)
            repo.transition(job.job_id, Transition("failed", actor="worker", error=error))
        return job.job_id

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


def audited(repo: JobRepository, action: str, job_ids: list[str]) -> Counter[str]:
    wanted = set(job_ids)
    records = repo.find_audit(QuerySpec(equals=(("action", action),)))
    return Counter(r.target for r in records if r.target in wanted)


def queue(stack: LocalStack, name: str, action: str) -> None:
    url = f"{stack.url('api')}/api/admin/queues/{name}/{action}"
    requests.post(url, headers=admin_headers(), timeout=30).raise_for_status()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def shoot(page: Page, name: str, selectors: tuple[str, ...]) -> None:
    """Screenshots at desktop and at phone width; at phone width nothing may be cut off."""
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=ARTIFACTS / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    nothing_cut_off(page, selectors)
    page.screenshot(path=ARTIFACTS / f"{name}-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def start_bulk(page: Page, button: str, matched: int) -> None:
    page.click(button)
    expect(page.locator("#bulk-preview")).to_have_attribute("data-matched", str(matched), timeout=WAIT_MS)
    expect(page.locator("#bulk-confirm")).to_be_visible()
    page.evaluate(PROGRESS_RECORDER)


def bulk_totals(page: Page) -> dict[str, int]:
    data = page.locator("#bulk").evaluate("box => ({...box.dataset})")
    return {k: int(data[k]) for k in ("acted", "skipped", "failed")}


# ---- bulk actions and the audit page -----------------------------------------------------------------
def test_a_bulk_retry_started_twice_retries_each_job_once_then_a_bulk_cancel_and_the_audit(
    stack, open_page, repo
):
    account = unique("acc-bulk")
    failed = seed(repo, 55, user="dana", account=account, failed=True)
    view = f"{stack.url('api')}/?status=failed&accountId={account}"
    queue(stack, "video-worker", "pause")  # retried jobs wait in the queue, to be cancelled next
    try:
        first, second = open_page("ops-a", "admin"), open_page("ops-b", "admin")
        for page in (first, second):
            page.goto(view)
            expect(page.locator("#jobs tbody tr")).to_have_count(55, timeout=WAIT_MS)
            start_bulk(page, "#bulk-retry", 55)
        expect(first.locator("#bulk-preview")).to_contain_text("Retry 55 job(s) (55 failed) matching")

        # Two operators confirm at once, one of them with a double click.
        first.dblclick("#bulk-confirm")
        second.click("#bulk-confirm")
        for page in (first, second):
            expect(page.locator("#bulk")).to_have_attribute("data-state", "done", timeout=WAIT_MS)

        totals = [bulk_totals(first), bulk_totals(second)]
        assert sum(t["acted"] for t in totals) == 55 and all(t["failed"] == 0 for t in totals), totals
        assert {repo.get_job(j).attempt for j in failed} == {2}
        assert audited(repo, "job.retry", failed) == Counter(dict.fromkeys(failed, 1))
        # Progress showed while it ran: the bar stood between empty and full on the way.
        shown = first.evaluate("window.__bulk")
        assert any(0 < s["value"] < s["max"] for s in shown), shown
        expect(first.locator("#bulk-status")).to_contain_text("retried")
        shoot(first, "console-bulk-retry", ("#actions-bar button", "#bulk", "#bulk-progress", "#bulk button"))

        # Retried, they are running again, their messages held by the paused queue: cancel them
        # all by filter (a job inside a step is asked to stop at the step's end).
        first.goto(f"{stack.url('api')}/?accountId={account}")
        expect(first.locator("#jobs tbody tr")).to_have_count(55, timeout=WAIT_MS)
        start_bulk(first, "#bulk-cancel", 55)
        expect(first.locator("#bulk-preview")).to_contain_text("Cancel 55 job(s) (0 queued, 55 running)")
        first.click("#bulk-confirm")
        expect(first.locator("#bulk")).to_have_attribute("data-state", "done", timeout=WAIT_MS)
        assert bulk_totals(first)["acted"] == 55
        jobs = [repo.get_job(j) for j in failed]
        assert all(j.status is JobStatus.CANCELLED or j.cancel_requested for j in jobs)
        assert audited(repo, "job.cancel", failed) == Counter(dict.fromkeys(failed, 1))
        first.screenshot(path=ARTIFACTS / "console-bulk-cancel.png", full_page=True)
    finally:
        queue(stack, "video-worker", "resume")

    # The audit page lists those actions with who and when.
    audit = open_page("lead", "admin")
    audit.goto(f"{stack.url('api')}/audit?action=jobs.bulk_retry")
    rows = audit.locator("#audit-table tbody tr")
    expect(rows.first).to_be_visible(timeout=WAIT_MS)
    actors = set(audit.locator('#audit-table td[data-col="actor"]').all_text_contents())
    assert {"user:ops-a", "user:ops-b"} <= actors, actors
    assert all(audit.locator('#audit-table td[data-col="at"]').all_text_contents())
    audit.goto(f"{stack.url('api')}/audit?action=job.retry&actor=user:ops-b")
    expect(rows.first).to_be_visible(timeout=WAIT_MS)
    assert set(audit.locator('#audit-table td[data-col="actor"]').all_text_contents()) == {"user:ops-b"}
    audit.goto(f"{stack.url('api')}/audit?action=job.cancel")
    expect(audit.locator('#audit-table td[data-col="target"]', has_text=failed[0])).to_have_count(1)
    shoot(
        audit, "console-audit", ("#audit-table td", "#audit-filters input", "#audit-filters select", "#back")
    )


def test_the_audit_page_filters_by_user_action_and_time_and_keeps_them_in_the_url(stack, open_page):
    queue(stack, "music-worker", "pause")  # an action to find, by user:e2e-check
    queue(stack, "music-worker", "resume")
    page = open_page("auditor", "admin")
    page.goto(f"{stack.url('api')}/audit")
    expect(page.locator("#scope")).to_have_text("Every action, by everyone.")
    page.fill("#a-actor", "ops-a")
    page.select_option("#a-action", "queue.pause")
    page.click("#a-apply")
    expect(page).to_have_url(f"{stack.url('api')}/audit?actor=user%3Aops-a&action=queue.pause")
    expect(page.locator("#a-message")).to_have_text("No action matches these filters.")
    page.fill("#a-actor", "")
    page.click("#a-apply")
    expect(page.locator('#audit-table td[data-col="action"]').first).to_have_text(
        "queue.pause", timeout=WAIT_MS
    )
    page.fill("#a-since", "2099-01-01T00:00:30")
    page.click("#a-apply")
    expect(page.locator("#a-message")).to_have_text("No action matches these filters.")
    page.reload()
    expect(page.locator("#a-since")).to_have_value("2099-01-01T00:00:30")
    expect(page.locator("#a-action")).to_have_value("queue.pause")
    page.go_back()
    expect(page.locator("#a-since")).to_have_value("")


# ---- export ------------------------------------------------------------------------------------------
def read_download(page: Page, button: str) -> list[dict[str, str]]:
    with page.expect_download(timeout=WAIT_MS) as info:
        page.click(button)
    path = info.value.path()
    assert info.value.suggested_filename.endswith(".csv")
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_csv_export_of_a_1000_job_filter_has_1000_rows(stack, open_page, repo):
    account = unique("acc-export")
    seeded = seed(repo, 1000, user="erin", account=account)
    page = open_page("ops", "admin")
    page.goto(f"{stack.url('api')}/?accountId={account}")
    expect(page.locator("#jobs tbody tr")).to_have_count(200, timeout=WAIT_MS)  # the rows loaded
    # A change to a job older than the loaded page leaves the table at one page; a change inside it shows.
    oldest, newest = seeded[0], page.locator("#jobs tbody tr").first.get_attribute("data-job-id")
    assert page.locator(f'tr[data-job-id="{oldest}"]').count() == 0
    for job_id in (oldest, newest):
        repo.transition(job_id, Transition("downloading", actor="worker"))
    expect(page.locator(f'tr[data-job-id="{newest}"] td[data-col="stage"]')).to_have_text(
        "downloading", timeout=WAIT_MS
    )
    expect(page.locator("#jobs-count")).to_have_text("200 shown")

    exported = read_download(page, "#export-csv")

    assert len(exported) == 1000 and {r["jobId"] for r in exported} == set(seeded)
    assert {r["accountId"] for r in exported} == {account}
    created = [r["createdAt"] for r in exported]
    assert created == sorted(created, reverse=True)  # the table's order, newest first
    expect(page.locator("#jobs-message")).to_contain_text("Exported 1000 job(s)")
    shoot(page, "console-export", ("#actions-bar button", "#jobs td", "#jobs-message"))


# ---- views in the URL --------------------------------------------------------------------------------
def test_a_filtered_sorted_searched_url_restores_the_view_on_reload_and_back_forward(stack, open_page, repo):
    account = unique("acc-view")
    ids = seed(repo, 4, user="gina", account=account, failed=True)
    page = open_page("ops", "admin")
    url = f"{stack.url('api')}/?status=failed&accountId={account}&q=job_&sort=jobId"
    page.goto(url)

    def shows_the_view() -> None:
        expect(page.locator("#jobs tbody tr")).to_have_count(4, timeout=WAIT_MS)
        expect(page.locator("#f-status")).to_have_value("failed")
        expect(page.locator("#f-account")).to_have_value(account)
        expect(page.locator("#f-search")).to_have_value("job_")
        expect(page.locator('th[data-key="jobId"]')).to_have_attribute("aria-sort", "ascending")
        shown = [r.get_attribute("data-job-id") for r in page.locator("#jobs tbody tr").all()]
        assert shown == sorted(ids)

    shows_the_view()
    page.reload()
    shows_the_view()
    assert page.url == url

    page.click('th[data-key="jobId"]')  # descending now: a new step in the history
    expect(page).to_have_url(url.replace("sort=jobId", "sort=-jobId"))
    page.select_option("#f-status", "queued")
    expect(page.locator("#jobs tbody tr")).to_have_count(0, timeout=WAIT_MS)
    assert "status=queued" in page.url
    page.go_back()
    expect(page.locator("#f-status")).to_have_value("failed")
    expect(page.locator('th[data-key="jobId"]')).to_have_attribute("aria-sort", "descending")
    page.go_back()
    shows_the_view()
    page.go_forward()
    expect(page.locator('th[data-key="jobId"]')).to_have_attribute("aria-sort", "descending")
    shoot(page, "console-filtered-view", ("#filters input", "#filters select", "#jobs td", "#actions-bar a"))


# ---- a plain user ------------------------------------------------------------------------------------
def test_a_plain_user_cannot_see_or_reach_another_users_jobs_anywhere(stack, open_page, repo):
    theirs_account, mine_account = unique("acc-frank"), unique("acc-carol")
    theirs = seed(repo, 3, user="frank", account=theirs_account, failed=True)
    mine = seed(repo, 2, user="carol", account=mine_account, failed=True)
    page = open_page("carol")
    expect(page.locator("#f-user")).to_be_hidden()  # the user filter is for admins

    # Asking for frank's jobs by URL is refused; by his account, nothing of his shows.
    page.goto(f"{stack.url('api')}/?userId=frank")
    expect(page.locator("#jobs-message")).to_contain_text("their own jobs", timeout=WAIT_MS)
    page.goto(f"{stack.url('api')}/?status=failed&accountId={theirs_account}")
    expect(page.locator("#live")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    expect(page.locator("#jobs tbody tr")).to_have_count(0)

    # A bulk retry of that filter finds none of them (a user's filter is their own jobs).
    page.click("#bulk-retry")
    expect(page.locator("#bulk-preview")).to_have_attribute("data-matched", "0", timeout=WAIT_MS)
    expect(page.locator("#bulk-confirm")).to_be_hidden()
    assert {repo.get_job(j).attempt for j in theirs} == {1}

    # The export of that filter is empty; of everything, it holds carol's jobs alone.
    assert read_download(page, "#export-csv") == []
    page.goto(f"{stack.url('api')}/")
    expect(page.locator("#live")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    everything = read_download(page, "#export-csv")
    assert {r["userId"] for r in everything} == {"carol"} and set(mine) <= {r["jobId"] for r in everything}
    shoot(page, "console-user", ("#actions-bar button", "#bulk", "#jobs td", "#logout"))

    # His job's page answers as a missing job; the API refuses his export and his bulk filter.
    page.goto(f"{stack.url('api')}/jobs/{theirs[0]}")
    expect(page.locator("#j-message")).to_have_text(f"No job {theirs[0]}.")
    token = page.evaluate("sessionStorage.getItem('jobtrail.token')")
    carol = {"Authorization": f"Bearer {token}"}
    api = stack.url("api")
    assert (
        requests.get(f"{api}/api/exports/jobs.csv?userId=frank", headers=carol, timeout=30).status_code == 403
    )
    refused = requests.post(
        f"{api}/api/bulk/preview",
        json={"action": "retry", "filter": {"userId": "frank"}},
        headers=carol,
        timeout=30,
    )
    assert refused.status_code == 403

    # The audit page shows carol her own actions only, and no one else's on request.
    page.goto(f"{api}/audit")
    expect(page.locator("#scope")).to_have_text("Your own actions.")
    expect(page.locator("#a-actor")).to_be_hidden()
    page.goto(f"{api}/audit?actor=user:ops-a")
    expect(page.locator("#a-message")).to_have_text("Users see their own actions only.")
    expect(page.locator("#audit-table tbody tr")).to_have_count(0)
    shoot(page, "console-audit-user", ("#audit-filters input", "#audit-filters select", "#back"))
