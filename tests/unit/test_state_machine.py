"""The transition rules, checked without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.errors import IllegalTransition, TransitionConflict
from services.jobs.models import Job, JobError, Liveness, heartbeat_of, liveness_of, make_trace_id
from services.jobs.state_machine import (
    Expectations,
    Transition,
    plan_heartbeat,
    plan_retry,
    plan_transition,
)
from services.pipelines.music_clips import MUSIC_CLIPS
from services.pipelines.spec import JobStatus
from services.pipelines.video import VIDEO

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RET = timedelta(days=30)


def job_at(stage: str, spec=VIDEO, **extra) -> Job:
    base = dict(
        job_id="job_1",
        pipeline=spec.name,
        account_id="acc",
        scenario_id="scn",
        source_id="src",
        user_id="u1",
        trace_id="acc-scn-src",
        status=spec.status_of(stage),
        stage=stage,
        progress_text="",
        created_at=T0,
        updated_at=T0,
        heartbeat_at=T0,
        event_count=1,
        last_event_at=T0,
    )
    base.update(extra)
    return Job(**base)


def move(job: Job, to: str, spec=VIDEO, now=T0 + timedelta(seconds=5), **kw):
    return plan_transition(spec, job, Transition(to_stage=to, actor="test", **kw), now, RET)


@pytest.mark.parametrize("spec", [VIDEO, MUSIC_CLIPS], ids=lambda s: s.name)
def test_every_forward_step_is_legal_and_records_its_event(spec):
    job = job_at(spec.initial.name, spec)
    for i, stage in enumerate(spec.stages[1:], start=1):
        plan = move(job, stage.name, spec, now=T0 + timedelta(seconds=5 * i))
        assert plan is not None
        assert plan.event.from_stage == job.stage and plan.event.to_stage == stage.name
        assert plan.event.seq == job.event_count + 1
        assert plan.event.duration_ms == 5000
        assert plan.patch["progress_text"] == stage.progress_text
        job = job.model_copy(update=plan.patch)
    assert job.status is JobStatus.SUCCEEDED
    assert job.finished_at is not None and job.expire_at == job.finished_at + RET
    assert job.stale_at is None


@pytest.mark.parametrize("terminal", ["failed", "timed_out", "cancelled", "published"])
def test_any_active_stage_may_end(terminal):
    for stage in VIDEO.stages[:-1]:
        plan = move(job_at(stage.name), terminal)
        assert plan is not None and plan.patch["status"].is_terminal


def test_skipping_forward_is_legal_so_late_stage_reports_are_not_lost():
    plan = move(job_at("received"), "processed")
    assert plan is not None and plan.patch["stage"] == "processed"


@pytest.mark.parametrize(
    "current,target",
    [
        ("downloaded", "downloading"),
        ("published", "processing"),
        ("processing", "received"),
    ],
)
def test_moving_backwards_is_illegal(current, target):
    with pytest.raises(IllegalTransition):
        move(job_at(current), target)


@pytest.mark.parametrize("terminal", ["published", "failed", "timed_out", "cancelled"])
@pytest.mark.parametrize("target", ["publishing", "failed", "timed_out", "cancelled", "published"])
def test_nothing_leaves_a_terminal_stage(terminal, target):
    if terminal == target:
        assert move(job_at(terminal), target) is None  # a duplicate, not an error
        return
    with pytest.raises(IllegalTransition):
        move(job_at(terminal), target)


def test_unknown_stage_is_illegal():
    with pytest.raises(IllegalTransition):
        move(job_at("received"), "STAGE_50_SUNO_SUCCESS")


def test_duplicate_is_a_no_op():
    assert move(job_at("downloading"), "downloading") is None
    assert move(job_at("downloading"), "downloading", expected_stage="received") is None


def test_precondition_mismatch_is_a_conflict():
    with pytest.raises(TransitionConflict) as err:
        move(job_at("processing"), "processed", expected_stage="downloading")
    assert not isinstance(err.value, IllegalTransition)


def test_failure_keeps_the_error_and_where_to_resume():
    plan = move(
        job_at("processing"),
        "failed",
        error=JobError(code="BOOM", message="x", retryable=False),
        message="processing failed",
    )
    assert plan.patch["error"].stage == "processing"
    assert plan.patch["resume_stage"] == "processing"
    assert plan.patch["progress_text"] == "processing failed"


def test_retry_reopens_failed_job_as_next_attempt_where_it_stopped():
    failed = job_at(
        "failed",
        resume_stage="processing",
        error=JobError(code="X", message="m"),
        attempt=1,
        event_count=4,
        finished_at=T0,
    )
    plan = plan_retry(VIDEO, failed, T0 + timedelta(seconds=1), "admin", RET)
    assert plan.patch["stage"] == "processing" and plan.patch["attempt"] == 2
    assert plan.patch["error"] is None and plan.patch["finished_at"] is None
    assert plan.event.seq == 5 and plan.event.attempt == 2 and plan.event.to_stage == "processing"


@pytest.mark.parametrize("stage", ["received", "processing", "published", "cancelled"])
def test_only_failed_or_timed_out_jobs_can_be_retried(stage):
    with pytest.raises(IllegalTransition):
        plan_retry(VIDEO, job_at(stage), T0, "admin", RET)


def test_music_deadline_caps_the_stale_time_whatever_the_heartbeat():
    deadline = T0 + timedelta(seconds=600)
    job = job_at("STAGE_40_SUNO_PENDING", MUSIC_CLIPS, deadline_at=deadline)
    patch = plan_heartbeat(MUSIC_CLIPS, job, T0 + timedelta(seconds=590))
    assert patch["stale_at"] == deadline


def test_heartbeat_of_a_finished_job_writes_nothing():
    assert plan_heartbeat(VIDEO, job_at("published"), T0) is None


def test_heartbeat_view_matches_seed_002():
    # The worker moved it into processing at T0 and has not finished the step 75 s later, past the
    # step's expected time: stuck, so stale.
    job = job_at("downloaded").model_copy(update=move(job_at("downloaded"), "processing", now=T0).patch)
    expect = Expectations(worker_seconds=70, grace_seconds=60)
    job = job.model_copy(update={"stuck_at": expect.stuck_at(VIDEO, "processing", T0, None)})
    assert heartbeat_of(job, T0 + timedelta(seconds=75)).model_dump(by_alias=True) == {
        "secondsSinceUpdate": 75,
        "isStale": True,
    }
    assert not heartbeat_of(job_at("published"), T0 + timedelta(hours=1)).is_stale


def test_a_queued_job_waits_its_turn_and_is_never_stuck_however_long_it_waits():
    queued = job_at("received")
    assert Expectations().stuck_at(VIDEO, "received", T0, None) is None
    assert liveness_of(queued, T0 + timedelta(hours=2)) is Liveness.WAITING
    assert not heartbeat_of(queued, T0 + timedelta(hours=2)).is_stale


def test_a_job_waiting_on_suno_is_stuck_only_once_its_scheduled_poll_is_overdue_by_the_grace():
    expect = Expectations(worker_seconds=110, grace_seconds=60)
    next_poll = T0 + timedelta(seconds=120)
    job = job_at("STAGE_30_SUNO_TASK_CREATED", MUSIC_CLIPS, next_poll_at=next_poll)
    plan = plan_transition(
        MUSIC_CLIPS, job, Transition("STAGE_40_SUNO_PENDING", actor="worker"), T0, RET, expect
    )
    assert plan is not None
    pending = job.model_copy(update=plan.patch)
    assert pending.stuck_at == next_poll + timedelta(seconds=60)
    assert liveness_of(pending, next_poll + timedelta(seconds=60)) is Liveness.WAITING
    assert liveness_of(pending, next_poll + timedelta(seconds=61)) is Liveness.STUCK


def test_a_retried_job_reads_retrying_and_any_move_clears_it():
    failed = job_at(
        "failed", error=JobError(code="X", message="x", retryable=True), resume_stage="processing"
    )
    retried = failed.model_copy(update=plan_retry(VIDEO, failed, T0, "admin", RET).patch)
    assert liveness_of(retried, T0 + timedelta(hours=1)) is Liveness.RETRYING and retried.stuck_at is None
    moved = retried.model_copy(update=move(retried, "processed").patch)
    assert moved.retrying_since is None and liveness_of(moved, T0 + timedelta(seconds=6)) is Liveness.RUNNING


def test_trace_id_joins_the_three_ids_and_rejects_empty_parts():
    assert make_trace_id("acc-1", "scn", "src-9") == "acc-1-scn-src-9"
    for bad in [("", "s", "x"), ("a", " ", "x"), ("a", "s", "x/y")]:
        with pytest.raises(ValueError):
            make_trace_id(*bad)


def test_music_retry_starts_over_because_suno_owns_the_later_stages():
    timed_out = job_at("STAGE_99_TIMEOUT", MUSIC_CLIPS, resume_stage="STAGE_40_SUNO_PENDING", finished_at=T0)
    plan = plan_retry(MUSIC_CLIPS, timed_out, T0 + timedelta(seconds=1), "admin", RET)
    assert plan.patch["stage"] == "STAGE_10_REQUEST_ACCEPTED" and plan.patch["status"] is JobStatus.QUEUED
    assert plan.patch["deadline_at"] == T0 + timedelta(seconds=601)
