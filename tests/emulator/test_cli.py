"""The ``jobtrail`` CLI on the emulators: locally (service calls) and against a served API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner

from devtools.local.serve import BackgroundServer
from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import Role, authenticate, mint_token
from services.cli import cli
from services.jobs.models import JobCreate
from services.jobs.repository import QuerySpec
from services.jobs.state_machine import Transition
from services.pipelines.spec import JobStatus
from services.runtime import Runtime
from services.settings import Settings
from tests.emulator.test_control_replay import dead_letters

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    bootstrap(settings.google_cloud_project, prefix=settings.topic_prefix)
    return Runtime(settings, clients)


@pytest.fixture
def api_url(rt) -> Iterator[str]:
    with BackgroundServer(create_app(rt)) as server:
        yield server.url


def run(rt: Runtime, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), obj={"settings": rt.settings}, catch_exceptions=False)
    # The API served in this process may log (one JSON object per line) into the captured output.
    lines = [line for line in result.output.splitlines(keepends=True) if not line.startswith('{"')]
    return result.exit_code, "".join(lines)


def make_job(rt: Runtime, user: str = "alice", source: str = "src-1") -> str:
    job, _ = rt.repo.create_job(
        JobCreate(
            pipeline="video",
            account_id="acc-1",
            scenario_id="scn-1",
            source_id=source,
            user_id=user,
            input={"videoUrl": "https://v/x"},
        )
    )
    return job.job_id


def test_jobs_list_and_show_locally(rt):
    mine, theirs = make_job(rt, "alice", "s1"), make_job(rt, "bob", "s2")
    code, out = run(rt, "jobs", "list", "--user", "alice")
    assert code == 0 and mine in out and theirs not in out
    code, out = run(rt, "--json", "jobs", "show", mine)
    shown = json.loads(out)
    assert (
        code == 0
        and shown["job"]["jobId"] == mine
        and shown["timeline"]["events"][0]["toStage"] == "received"
    )
    code, out = run(rt, "jobs", "show", "job_missing")
    assert code == 1 and "JOB_NOT_FOUND" in out


def test_jobs_tail_follows_a_job_until_it_ends(rt):
    job_id = make_job(rt)
    outcome: dict[str, tuple[int, str]] = {}
    tail = threading.Thread(
        target=lambda: outcome.setdefault("tail", run(rt, "jobs", "tail", job_id, "--interval", "0.1"))
    )
    tail.start()
    for stage in ("downloading", "downloaded", "processing", "processed", "publishing", "published"):
        rt.repo.transition(job_id, Transition(stage, actor="worker"))
    tail.join(timeout=60)
    code, out = outcome["tail"]
    assert code == 0 and out.splitlines()[-1] == f"{job_id} ended: succeeded (published)"
    assert [line.split(" -> ")[1].split(" ")[0] for line in out.splitlines()[:-1]] == [
        "received",
        "downloading",
        "downloaded",
        "processing",
        "processed",
        "publishing",
        "published",
    ]


def test_tail_of_a_failed_job_exits_1(rt):
    job_id = make_job(rt)
    rt.repo.transition(job_id, Transition("failed", actor="worker", message="boom"))
    code, out = run(rt, "jobs", "tail", job_id)
    assert code == 1 and "ended: failed" in out


def test_dlq_list_and_bulk_replay_locally_with_a_progress_bar(rt):
    dead_letters(rt, 12)
    code, out = run(rt, "dlq", "list", "--limit", "5")
    assert code == 0 and out.startswith("12 dead-lettered job(s)") and "more: --cursor" in out
    code, out = run(rt, "dlq", "replay", "--all", "--page-size", "5")
    assert code == 0 and "replayed 12, skipped 0 (replayed elsewhere), failed 0, remaining 0" in out
    assert "replaying" in out  # the progress bar (stderr, mixed in by CliRunner)
    code, out = run(rt, "dlq", "replay", "--all")
    assert code == 0 and "replayed 0" in out
    code, out = run(rt, "dlq", "replay", "--job", "x", "--all")
    assert code == 2 and "exactly one of" in out


def test_bulk_replay_through_a_deployed_api_goes_page_by_page(rt, api_url):
    jobs = dead_letters(rt, 23)
    token = mint_token(rt.settings, "ops", Role.ADMIN)
    code, out = run(
        rt, "--api-url", api_url, "--token", token, "--json", "dlq", "replay", "--all", "--page-size", "10"
    )
    report = json.loads(out[out.index("{") :])
    assert code == 0 and (report["matched"], report["replayed"], report["remaining"]) == (23, 23, 0)
    assert report["pages"] == 3
    assert all(rt.repo.get_job(j.job_id).attempt == 2 for j in jobs)
    bulk_calls = [r for r in rt.repo.find_audit(QuerySpec()) if r.action == "dlq.replay_bulk"]
    assert len(bulk_calls) == 3 and {r.actor for r in bulk_calls} == {"user:ops"}


def test_remote_owner_rules_apply(rt, api_url):
    bobs = make_job(rt, "bob")
    token = mint_token(rt.settings, "alice")
    code, out = run(rt, "--api-url", api_url, "--token", token, "jobs", "show", bobs)
    assert code == 1 and "JOB_NOT_FOUND" in out
    code, out = run(rt, "--api-url", api_url, "--token", token, "queue", "pause", "video-worker")
    assert code == 1 and "FORBIDDEN" in out
    code, out = run(rt, "--api-url", api_url, "jobs", "list")
    assert code == 1 and "needs --token" in out


def test_queue_pause_resume_and_list_locally(rt):
    code, out = run(rt, "queue", "pause", "video-worker")
    assert code == 0 and "video-worker paused" in out and rt.repo.get_queue("video-worker").paused
    code, out = run(rt, "queue", "list")
    assert code == 0 and any(line.split()[:2] == ["video-worker", "PAUSED"] for line in out.splitlines())
    code, out = run(rt, "queue", "resume", "video-worker")
    assert code == 0 and not rt.repo.get_queue("video-worker").paused
    code, out = run(rt, "queue", "pause", "nope")
    assert code == 1 and "QUEUE_NOT_FOUND" in out


def test_sweep_times_out_stale_jobs(rt):
    job_id = make_job(rt)
    rt.repo.update_fields(job_id, stale_at=rt.repo.clock() - timedelta(seconds=1))
    code, out = run(rt, "sweep")
    assert code == 0 and "timed out 1" in out
    assert rt.repo.get_job(job_id).status is JobStatus.TIMED_OUT


def test_token_mints_a_verifiable_jwt(rt):
    code, out = run(rt, "token", "root", "--role", "admin")
    principal = authenticate(rt.settings, {"Authorization": f"Bearer {out.strip()}"})
    assert code == 0 and principal.subject == "root" and principal.is_admin
