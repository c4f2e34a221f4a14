"""The dead-letters page's API on the emulators: groups and counts, a plain user's isolation, the
input editor (validation by field, diff, audit with before and after, redaction), and replays of
a selection run twice at once, each job replayed once and audited.

Dead letters are written through the repository as the DLQ analyzer leaves them; replays are real
(published to the pipeline's topic, pulled and counted by the test)."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from google.api_core.exceptions import DeadlineExceeded
from google.cloud import pubsub_v1
from google.pubsub_v1.types import PullResponse

from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import mint_token
from services.jobs.models import Job, JobError
from services.jobs.repository import QuerySpec
from services.pipelines.spec import JobStatus
from services.runtime import Runtime

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(settings, clients, repo) -> Runtime:  # repo: owns cleanup
    bootstrap(settings.google_cloud_project, prefix=settings.topic_prefix)
    return Runtime(settings, clients)


@pytest.fixture
def subscriber():
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


def headers(rt: Runtime, sub: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, sub, role)}"}


def admin(rt: Runtime) -> dict[str, str]:
    return headers(rt, "ops", "admin")


_made = Counter[str]()


def dead_letter(
    rt: Runtime,
    *,
    user: str = "alice",
    pipeline: str = "video",
    cause: str | None = "VIDEO_SOURCE_ERROR",
    days_ago: int = 0,
    input: dict[str, Any] | None = None,
) -> Job:
    """A job as the DLQ analyzer leaves it: failed, DEAD_LETTERED, the last attempt's code as cause."""
    now = rt.repo.clock()
    _made[user] += 1
    i = _made[user]
    at = now - timedelta(days=days_ago)
    video = pipeline == "video"
    job = Job(
        pipeline=pipeline,
        account_id=f"acc-{user}",
        scenario_id="scn-1",
        source_id=f"src-{i}",
        user_id=user,
        job_id=f"job_{int(now.timestamp() * 1000)}_{user}{i:03d}",
        trace_id=f"acc-{user}-scn-1-src-{i}",
        status=JobStatus.FAILED,
        stage="failed" if video else "STAGE_90_FAILED",
        progress_text="dead-lettered",
        attempt=1,
        created_at=at - timedelta(minutes=5),
        updated_at=at,
        heartbeat_at=at,
        finished_at=at,
        resume_stage="downloading" if video else None,
        event_count=3,
        last_event_at=at,
        input=input
        if input is not None
        else (
            {"videoUrl": "https://videos.example/poison-1.mp4", "caption": "hi"}
            if video
            else {"channelId": "ch-1", "prompt": "p", "style": "", "title": "", "instrumental": False}
        ),
        error=JobError(
            code="DEAD_LETTERED",
            message="dead-lettered after 5 attempts",
            retryable=True,
            stage="downloading",
            cause=cause,
        ),
    )
    rt.repo.put_jobs([job])
    return job


def drain(subscriber: pubsub_v1.SubscriberClient, rt: Runtime, expected: int) -> Counter[str]:
    """Pull (and ack) video-worker until ``expected`` messages arrived and a pull comes back empty."""
    path = subscriber.subscription_path(
        rt.settings.google_cloud_project, f"{rt.settings.topic_prefix}video-worker"
    )
    seen: Counter[str] = Counter()
    empty_pulls = 0
    while empty_pulls < 2:
        try:
            response = subscriber.pull(
                request={"subscription": path, "max_messages": 500}, timeout=2, retry=None
            )
        except DeadlineExceeded:
            response = PullResponse()
        if not response.received_messages:
            empty_pulls += 1 if sum(seen.values()) >= expected else 0
            continue
        for received in response.received_messages:
            seen[json.loads(received.message.data)["job_id"]] += 1
        subscriber.acknowledge(
            request={"subscription": path, "ack_ids": [r.ack_id for r in response.received_messages]}
        )
    return seen


def audits(rt: Runtime, action: str) -> list[Any]:
    return rt.repo.find_audit(QuerySpec(equals=(("action", action),)))


# ---- the board -----------------------------------------------------------------------------------
def test_the_board_groups_dead_letters_by_pipeline_cause_and_day_with_counts(rt):
    dead_letter(rt, cause="VIDEO_SOURCE_ERROR")
    dead_letter(rt, cause="VIDEO_SOURCE_ERROR", user="bob", days_ago=1)
    dead_letter(rt, cause=None)
    dead_letter(rt, pipeline="music_clips", cause="SUNO_UNAVAILABLE", user="bob")
    client = create_app(rt).test_client()
    today = rt.repo.clock().date().isoformat()
    yesterday = (rt.repo.clock() - timedelta(days=1)).date().isoformat()

    board = client.get("/api/dead-letters", headers=admin(rt)).get_json()
    assert (board["total"], board["matched"], board["truncated"]) == (4, 4, False)
    groups = {facet: {g["value"]: g["count"] for g in board["groups"][facet]} for facet in board["groups"]}
    assert groups == {
        "pipeline": {"video": 3, "music_clips": 1},
        "cause": {"VIDEO_SOURCE_ERROR": 2, "UNKNOWN": 1, "SUNO_UNAVAILABLE": 1},
        "day": {today: 3, yesterday: 1},
    }
    assert board["subscriptions"]["video"] == ["video-worker"]
    assert board["subscriptions"]["music_clips"] == ["music-worker"]

    # Each facet is counted over the dead letters matching the other facets.
    filtered = client.get(
        "/api/dead-letters",
        query_string={"cause": "VIDEO_SOURCE_ERROR", "since": f"{today}T00:00:00Z"},
        headers=admin(rt),
    ).get_json()
    assert filtered["matched"] == 1 and [j["error"]["cause"] for j in filtered["jobs"]] == [
        "VIDEO_SOURCE_ERROR"
    ]
    assert {g["value"]: g["count"] for g in filtered["groups"]["day"]} == {today: 1, yesterday: 1}
    assert {g["value"]: g["count"] for g in filtered["groups"]["cause"]} == {
        "VIDEO_SOURCE_ERROR": 1,
        "UNKNOWN": 1,
        "SUNO_UNAVAILABLE": 1,
    }

    bad = client.get("/api/dead-letters", query_string={"since": "yesterday"}, headers=admin(rt))
    assert (bad.status_code, bad.get_json()["error"]) == (400, "INVALID_INPUT")


def test_a_plain_user_sees_and_acts_only_on_their_own_dead_letters(rt, subscriber):
    mine = dead_letter(rt, user="alice")
    theirs = dead_letter(rt, user="bob")
    client = create_app(rt).test_client()
    alice = headers(rt, "alice")

    board = client.get("/api/dead-letters", headers=alice).get_json()
    assert [j["jobId"] for j in board["jobs"]] == [mine.job_id] and board["total"] == 1
    assert client.get("/api/dead-letters", query_string={"userId": "bob"}, headers=alice).status_code == 403

    # Someone else's job answers as a missing one, wherever it is named.
    missing = [
        client.post(
            f"/api/dead-letters/{theirs.job_id}/input/check", json={"input": mine.input}, headers=alice
        ),
        client.put(f"/api/dead-letters/{theirs.job_id}/input", json={"input": mine.input}, headers=alice),
        client.post(
            "/api/dead-letters/preview", json={"selection": {"jobIds": [theirs.job_id]}}, headers=alice
        ),
        client.post(
            "/api/dead-letters/replay",
            json={"selection": {"jobIds": [mine.job_id, theirs.job_id]}, "asOf": rt.repo.clock().isoformat()},
            headers=alice,
        ),
    ]
    assert [(r.status_code, r.get_json()["error"]) for r in missing] == [(404, "JOB_NOT_FOUND")] * 4
    assert rt.repo.get_job(theirs.job_id).input == theirs.input

    # "All matching" is all of one's own.
    preview = client.post("/api/dead-letters/preview", json={"selection": {"filter": {}}}, headers=alice)
    assert preview.get_json()["matched"] == 1
    run = client.post(
        "/api/dead-letters/replay",
        json={"selection": {"filter": {}}, "asOf": preview.get_json()["asOf"]},
        headers=alice,
    ).get_json()
    assert (run["replayed"], run["remaining"]) == (1, 0)
    assert drain(subscriber, rt, 1) == Counter({mine.job_id: 1})
    assert rt.repo.get_job(theirs.job_id).error.code == "DEAD_LETTERED"

    # An admin sees (and may act on) everyone's.
    assert client.get("/api/dead-letters", headers=admin(rt)).get_json()["total"] == 1
    assert (
        client.post(
            "/api/dead-letters/preview", json={"selection": {"jobIds": [theirs.job_id]}}, headers=admin(rt)
        ).get_json()["matched"]
        == 1
    )


# ---- the input editor ------------------------------------------------------------------------------
def test_a_bad_input_is_refused_field_by_field_and_nothing_is_written(rt):
    video = dead_letter(rt)
    music = dead_letter(rt, pipeline="music_clips", cause="SUNO_UNAVAILABLE")
    client = create_app(rt).test_client()

    for method in ("post", "put"):
        path = f"/api/dead-letters/{video.job_id}/input" + ("/check" if method == "post" else "")
        response = getattr(client, method)(
            path, json={"input": {"videoUrl": "not a url", "captoin": "typo"}}, headers=admin(rt)
        )
        body = response.get_json()
        assert (response.status_code, body["error"], body["error_field"]) == (400, "INVALID_INPUT", "input")
        assert {e["field"] for e in body["fieldErrors"]} == {"videoUrl", "captoin"}
        assert "videoUrl" in body["message"] and all(e["message"] for e in body["fieldErrors"])

    response = client.put(
        f"/api/dead-letters/{music.job_id}/input",
        json={"input": {**music.input, "instrumental": "yes", "title": "x" * 81}},
        headers=admin(rt),
    )
    assert response.status_code == 400
    assert {e["field"] for e in response.get_json()["fieldErrors"]} == {"instrumental", "title"}

    not_json = client.put(f"/api/dead-letters/{video.job_id}/input", data="{", headers=admin(rt))
    assert (not_json.status_code, not_json.get_json()["error"]) == (400, "INVALID_INPUT")

    assert rt.repo.get_job(video.job_id).input == video.input
    assert rt.repo.get_job(music.job_id).input == music.input
    assert audits(rt, "dlq.edit_input") == []


def test_an_input_edit_shows_its_diff_first_then_is_saved_and_audited_with_before_and_after(rt):
    job = dead_letter(
        rt, input={"videoUrl": "https://videos.example/poison-1.mp4?token=s3cr3t-value", "caption": "hi"}
    )
    client = create_app(rt).test_client()
    fixed = {"videoUrl": "https://videos.example/clip-1.mp4?token=s3cr3t-value", "caption": "hi"}

    check = client.post(
        f"/api/dead-letters/{job.job_id}/input/check", json={"input": fixed}, headers=admin(rt)
    )
    assert check.status_code == 200
    assert check.get_json()["saved"] is False
    assert check.get_json()["changes"] == [
        {
            "field": "videoUrl",
            "change": "changed",
            "before": job.input["videoUrl"],
            "after": fixed["videoUrl"],
        }
    ]
    assert rt.repo.get_job(job.job_id).input == job.input  # a check saves nothing
    assert audits(rt, "dlq.edit_input") == []

    saved = client.put(f"/api/dead-letters/{job.job_id}/input", json={"input": fixed}, headers=admin(rt))
    assert saved.status_code == 200 and saved.get_json()["saved"] is True
    stored = rt.repo.get_job(job.job_id)
    assert stored.input == fixed and stored.error.code == "DEAD_LETTERED"  # still waiting for its replay

    [record] = audits(rt, "dlq.edit_input")
    assert (record.actor, record.target, record.result) == ("user:ops", job.job_id, "ok; 1 field(s) changed")
    assert record.params["changed"] == ["videoUrl"]
    assert record.params["before"]["videoUrl"] == "https://videos.example/poison-1.mp4?token=[REDACTED]"
    assert record.params["after"]["videoUrl"] == "https://videos.example/clip-1.mp4?token=[REDACTED]"
    assert "s3cr3t-value" not in json.dumps(record.params)


def test_only_a_dead_letter_s_input_can_be_edited(rt, subscriber):
    job = dead_letter(rt)
    client = create_app(rt).test_client()
    as_of = rt.repo.clock() + timedelta(seconds=1)
    client.post(
        "/api/dead-letters/replay",
        json={"selection": {"jobIds": [job.job_id]}, "asOf": as_of.isoformat()},
        headers=admin(rt),
    )
    fixed = {"videoUrl": "https://videos.example/clip-1.mp4", "caption": "hi"}
    response = client.put(f"/api/dead-letters/{job.job_id}/input", json={"input": fixed}, headers=admin(rt))
    assert (response.status_code, response.get_json()["error"]) == (409, "NOT_DEAD_LETTERED")
    assert rt.repo.get_job(job.job_id).input == job.input
    [refused] = audits(rt, "dlq.edit_input")
    assert refused.result == "error: NOT_DEAD_LETTERED"
    drain(subscriber, rt, 1)


# ---- replay of a selection ---------------------------------------------------------------------------
def test_the_same_selection_replayed_twice_at_once_replays_each_job_once(rt, subscriber):
    jobs = [dead_letter(rt, user=("alice", "bob")[i % 2]) for i in range(30)]
    other_cause = dead_letter(rt, cause="PROCESSOR_ERROR")
    client = create_app(rt).test_client()
    selection = {"filter": {"cause": "VIDEO_SOURCE_ERROR"}}

    preview = client.post(
        "/api/dead-letters/preview", json={"selection": selection}, headers=admin(rt)
    ).get_json()
    assert (preview["matched"], preview["byPipeline"], preview["bySubscription"]) == (
        30,
        {"video": 30},
        {"video-worker": 30},
    )

    def operator(name: str) -> list[dict[str, Any]]:
        calls = []
        while True:
            body = {"selection": selection, "asOf": preview["asOf"], "limit": 7}
            call = (
                create_app(rt)
                .test_client()
                .post("/api/dead-letters/replay", json=body, headers=headers(rt, name, "admin"))
            )
            assert call.status_code == 200, call.get_json()
            calls.append(call.get_json())
            if calls[-1]["remaining"] == 0:
                return calls

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(operator, ("ops-a", "ops-b")))
    calls = [c for run in runs for c in run]
    assert sum(c["replayed"] for c in calls) == 30 and sum(c["failed"] for c in calls) == 0

    assert drain(subscriber, rt, 30) == Counter({j.job_id: 1 for j in jobs})
    assert Counter(r.target for r in audits(rt, "dlq.replay")) == Counter({j.job_id: 1 for j in jobs})
    assert len(audits(rt, "dlq.replay_selection")) == len(calls)
    assert all(rt.repo.get_job(j.job_id).attempt == 2 for j in jobs)
    assert rt.repo.get_job(other_cause.job_id).error.code == "DEAD_LETTERED"

    # A job replayed since the preview that is dead-lettered again is not replayed by a late rerun.
    again = jobs[0]
    rt.repo.put_jobs(
        [rt.repo.get_job(again.job_id).model_copy(update={"error": again.error, "status": JobStatus.FAILED})]
    )
    late = client.post(
        "/api/dead-letters/replay",
        json={"selection": {"jobIds": [again.job_id]}, "asOf": preview["asOf"]},
        headers=admin(rt),
    ).get_json()
    assert (late["replayed"], late["skipped"]) == (0, 1)


def test_a_replay_pubsub_refuses_is_reported_and_audited_not_lost(settings, clients, repo):
    # No topics: the publish is refused (as by a deleted topic or an unreachable Pub/Sub).
    rt = Runtime(settings, clients)
    job = dead_letter(rt)
    client = create_app(rt).test_client()
    as_of = (rt.repo.clock() + timedelta(seconds=1)).isoformat()
    result = client.post(
        "/api/dead-letters/replay",
        json={"selection": {"jobIds": [job.job_id]}, "asOf": as_of},
        headers=admin(rt),
    ).get_json()
    assert (result["replayed"], result["failed"]) == (0, 1)
    assert result["failures"] == [{"jobId": job.job_id, "error": "PubSubUnavailable"}]
    [record] = audits(rt, "dlq.replay")
    assert (record.target, record.result) == (job.job_id, "error: PUBSUB_UNAVAILABLE")
