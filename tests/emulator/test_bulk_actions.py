"""Bulk retry and cancel by filter on the emulators: through the API (as admin, as a plain user,
two runs at once) and through the CLI, locally and against a served API. Each job is acted on
once, and every job acted on is audited."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from devtools.local.serve import BackgroundServer
from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import mint_token
from services.cli import cli
from services.jobs.models import JobCreate, JobError
from services.jobs.repository import QuerySpec
from services.jobs.state_machine import Transition
from services.pipelines.spec import JobStatus
from services.runtime import Runtime
from services.settings import Settings

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(settings: Settings, clients, repo) -> Runtime:  # repo: owns cleanup
    bootstrap(settings.google_cloud_project, prefix=settings.topic_prefix)
    return Runtime(settings, clients)


def auth(rt: Runtime, sub: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, sub, role)}"}


def make_jobs(
    rt: Runtime, n: int, *, user: str = "alice", pipeline: str = "video", fail: bool = True
) -> list[str]:
    def one(i: int) -> str:
        job, _ = rt.repo.create_job(
            JobCreate(
                pipeline=pipeline,
                account_id="acc-1",
                scenario_id="scn-1",
                source_id=f"{user}-{pipeline}-{i}",
                user_id=user,
                input={"videoUrl": "https://v/x.mp4"},
            )
        )
        if fail:
            first = "downloading" if pipeline == "video" else "STAGE_20_SUNO_REQUEST_SENT"
            rt.repo.transition(job.job_id, Transition(first, actor="worker"))
            error = JobError(code="BOOM", message="boom", retryable=True)
            failed = "failed" if pipeline == "video" else "STAGE_90_FAILED"
            rt.repo.transition(job.job_id, Transition(failed, actor="worker", error=error))
        return job.job_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def audited_targets(rt: Runtime, action: str) -> Counter[str]:
    records = rt.repo.find_audit(QuerySpec(equals=(("action", action),)))
    return Counter(r.target for r in records)


def test_two_bulk_retries_at_once_retry_each_matching_job_exactly_once(rt):
    video = make_jobs(rt, 52) + make_jobs(rt, 3, user="bob")
    music = make_jobs(rt, 2, pipeline="music_clips")
    headers = auth(rt, "ops", "admin")
    client = create_app(rt).test_client()

    preview = client.post(
        "/api/bulk/preview", json={"action": "retry", "filter": {"pipeline": "video"}}, headers=headers
    )
    assert preview.status_code == 200, preview.json
    assert preview.json["matched"] == 55 and preview.json["byStatus"] == {"failed": 55, "timed_out": 0}

    def run_to_the_end(_: int) -> list[dict[str, Any]]:
        calls, own = [], create_app(rt).test_client()
        while True:
            body = {
                "action": "retry",
                "filter": {"pipeline": "video", "status": "failed"},
                "updatedBefore": preview.json["asOf"],
                "limit": 20,
            }
            result = own.post("/api/bulk", json=body, headers=headers)
            assert result.status_code == 200, result.json
            calls.append(result.json)
            if result.json["acted"] + result.json["skipped"] == 0 or result.json["remaining"] == 0:
                return calls

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(run_to_the_end, range(2)))
    acted = sum(call["acted"] for calls in runs for call in calls)
    assert acted == 55 and all(call["failed"] == 0 for calls in runs for call in calls)
    assert {rt.repo.get_job(j).attempt for j in video} == {2}
    assert {rt.repo.get_job(j).attempt for j in music} == {1}  # another pipeline: untouched
    assert audited_targets(rt, "job.retry") == Counter(dict.fromkeys(video, 1))
    assert len(rt.repo.find_audit(QuerySpec(equals=(("action", "jobs.bulk_retry"),)))) >= 2

    # Once more, after they were all retried: nothing matches, nothing happens.
    again = client.post(
        "/api/bulk",
        json={"action": "retry", "filter": {"pipeline": "video"}, "updatedBefore": preview.json["asOf"]},
        headers=headers,
    )
    assert (again.json["matched"], again.json["acted"]) == (0, 0)


def test_a_job_that_failed_again_after_the_preview_is_not_retried_twice(rt):
    [job_id] = make_jobs(rt, 1)
    client = create_app(rt).test_client()
    headers = auth(rt, "ops", "admin")
    as_of = client.post("/api/bulk/preview", json={"action": "retry"}, headers=headers).json["asOf"]
    body = {"action": "retry", "updatedBefore": as_of}
    assert client.post("/api/bulk", json=body, headers=headers).json["acted"] == 1
    rt.repo.transition(job_id, Transition("failed", actor="worker", error=JobError(code="X", message="x")))
    assert client.post("/api/bulk", json=body, headers=headers).json["acted"] == 0
    assert rt.repo.get_job(job_id).attempt == 2


def test_a_plain_user_previews_and_acts_on_their_own_jobs_only(rt):
    mine, theirs = make_jobs(rt, 3), make_jobs(rt, 2, user="bob")
    client = create_app(rt).test_client()
    alice = auth(rt, "alice")
    preview = client.post("/api/bulk/preview", json={"action": "retry"}, headers=alice).json
    assert preview["matched"] == 3 and preview["filter"]["userId"] == "alice"
    refused = client.post(
        "/api/bulk/preview", json={"action": "retry", "filter": {"userId": "bob"}}, headers=alice
    )
    assert refused.status_code == 403
    done = client.post(
        "/api/bulk", json={"action": "retry", "updatedBefore": preview["asOf"]}, headers=alice
    ).json
    assert done["acted"] == 3
    assert {rt.repo.get_job(j).attempt for j in mine} == {2} and {
        rt.repo.get_job(j).attempt for j in theirs
    } == {1}


def test_bulk_cancel_cancels_queued_jobs_and_asks_running_ones_to_stop_once(rt):
    queued = make_jobs(rt, 4, fail=False)
    [running] = make_jobs(rt, 1, fail=False)
    rt.repo.transition(running, Transition("downloading", actor="worker"))
    client = create_app(rt).test_client()
    headers = auth(rt, "ops", "admin")
    preview = client.post("/api/bulk/preview", json={"action": "cancel"}, headers=headers).json
    assert preview["byStatus"] == {"queued": 4, "running": 1}
    body = {"action": "cancel", "updatedBefore": (rt.repo.clock() + timedelta(seconds=1)).isoformat()}
    first = client.post("/api/bulk", json=body, headers=headers).json
    assert (first["acted"], first["skipped"], first["remaining"]) == (5, 0, 1)
    assert {rt.repo.get_job(j).status for j in queued} == {JobStatus.CANCELLED}
    assert rt.repo.get_job(running).cancel_requested
    second = client.post("/api/bulk", json=body, headers=headers).json
    assert (second["acted"], second["skipped"]) == (0, 1)  # asked once already
    assert audited_targets(rt, "job.cancel") == Counter(dict.fromkeys([*queued, running], 1))


@pytest.mark.parametrize("remote", [False, True])
def test_the_cli_retries_by_filter_with_a_progress_bar(rt, remote):
    jobs = make_jobs(rt, 7)
    args = ["--json", "jobs", "retry", "--status", "failed", "--pipeline", "video", "--yes"]
    if remote:
        server = BackgroundServer(create_app(rt))
        args = ["--api-url", server.url, "--token", mint_token(rt.settings, "ops", "admin"), *args]
    try:
        result = CliRunner().invoke(cli, args, obj={"settings": rt.settings}, catch_exceptions=False)
    finally:
        if remote:
            server.stop()
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith('{"severity')]
    report = json.loads("\n".join(lines[lines.index("{") :]))
    assert (report["matched"], report["acted"], report["failed"]) == (7, 7, 0)
    assert {rt.repo.get_job(j).attempt for j in jobs} == {2}
    assert "7 job(s) match" in result.stderr


def test_the_cli_refuses_a_job_id_and_filters_together(rt):
    result = CliRunner().invoke(
        cli, ["jobs", "retry", "job_1", "--pipeline", "video"], obj={"settings": rt.settings}
    )
    assert result.exit_code == 2 and "not both" in result.output
