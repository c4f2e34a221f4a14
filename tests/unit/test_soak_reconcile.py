"""The soak's reconciliation finds every kind of gap it claims to (devtools/local/soak.py).

A small consistent world (one job of each kind the soak sends) reconciles clean; each test then
breaks it the way a real bug would and expects the matching check to fail, and only that one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.local.soak import (
    FaultLog,
    Observed,
    SoakPlan,
    Submission,
    reconcile,
    worker_counted_success,
)
from services.jobs.models import Execution, ExecutionStatus, Job, JobError, JobEvent
from services.pipelines.music_clips import MUSIC_CLIPS
from services.pipelines.spec import JobStatus
from services.pipelines.video import VIDEO

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
PLAN = SoakPlan(jobs=4, poison=1, cancels=0, worker_restarts_at=(0.3, 0.7))


def make_job(n: int, pipeline: str, stage: str, *, error: JobError | None = None, **extra: Any) -> Job:
    spec = VIDEO if pipeline == "video" else MUSIC_CLIPS
    return Job(
        pipeline=pipeline,
        account_id="acc",
        scenario_id="scn",
        source_id=f"src-{n}",
        user_id="user",
        idempotency_key=f"key-{n}",
        job_id=f"job-{n}",
        trace_id=f"acc-scn-src-{n}",
        status=spec.status_of(stage),
        stage=stage,
        progress_text="",
        created_at=T0,
        updated_at=T0 + timedelta(seconds=5),
        heartbeat_at=T0,
        finished_at=T0 + timedelta(seconds=5) if spec.status_of(stage).is_terminal else None,
        error=error,
        **extra,
    )


def timeline(job: Job, stages: list[str], last_actor: str = "worker") -> list[JobEvent]:
    return [
        JobEvent(
            event_id=f"{seq:05d}",
            job_id=job.job_id,
            seq=seq,
            from_stage=stages[seq - 2] if seq > 1 else None,
            to_stage=stage,
            at=T0 + timedelta(seconds=seq),
            actor=last_actor if seq == len(stages) else "worker",
            attempt=1,
        )
        for seq, stage in enumerate(stages, start=1)
    ]


def execution(job: Job, n: int, status: ExecutionStatus, **extra: Any) -> Execution:
    return Execution(
        execution_id=f"m{job.job_id}-{n}",
        message_id=f"m{job.job_id}",
        job_id=job.job_id,
        workflow=job.pipeline,
        subscription="video-worker",
        attempt=n,
        status=status,
        started_at=T0 + timedelta(seconds=n),
        finished_at=T0 + timedelta(seconds=n, milliseconds=500),
        trace_id=job.trace_id,
        **extra,
    )


def series(**values: float) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Counter samples as scrape_counters returns them (labels: pipeline=video, status=succeeded)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for name, value in values.items():
        labels = (("pipeline", "video"), ("status", "succeeded")) if name == "jobs_finished_total" else ()
        out[name] = {labels: value}
    return out


def world() -> tuple[list[Submission], Observed, FaultLog]:
    """A video job published, a poison one dead-lettered, a Music Clips job timed out waiting on a
    Suno task that never finishes, one finished by the poller after Suno never called back."""
    video_stages = [s.name for s in VIDEO.stages]
    music = [s.name for s in MUSIC_CLIPS.stages]
    published = make_job(1, "video", "published")
    poison = make_job(
        2, "video", "failed", error=JobError(code="DEAD_LETTERED", message="after 5 attempts", retryable=True)
    )
    never = make_job(
        3,
        "music_clips",
        "STAGE_99_TIMEOUT",
        error=JobError(code="DEADLINE_EXCEEDED", message="600s", retryable=True),
        suno_task_id="t3",
    )
    polled = make_job(4, "music_clips", "STAGE_50_SUNO_SUCCESS", suno_task_id="t4")
    events = {
        published.job_id: timeline(published, video_stages),
        poison.job_id: timeline(poison, ["received", "downloading", "failed"], "dlq-analyzer"),
        never.job_id: timeline(never, [*music[:4], "STAGE_99_TIMEOUT"], "sweeper"),
        polled.job_id: timeline(polled, music, "suno-poller"),
    }
    jobs = [
        j.model_copy(update={"event_count": len(events[j.job_id])})
        for j in (published, poison, never, polled)
    ]
    executions = [
        execution(published, 1, ExecutionStatus.SUCCESS),
        *(
            execution(
                poison, n, ExecutionStatus.FAIL, last_error="VIDEO_SOURCE_UNAVAILABLE: 500", retryable=True
            )
            for n in range(1, 5)
        ),
        execution(
            poison,
            5,
            ExecutionStatus.FAIL,
            last_error="VIDEO_SOURCE_UNAVAILABLE",
            retryable=True,
            queued_to_dlq=True,
        ),
        execution(never, 1, ExecutionStatus.SUCCESS),
        execution(polled, 1, ExecutionStatus.SUCCESS),
    ]
    submissions = [
        Submission(index=n, key=f"key-{n}", pipeline=j.pipeline, poison=n == 2, job_ids={j.job_id})
        for n, j in enumerate(jobs, start=1)
    ]
    observed = Observed(
        jobs=jobs,
        executions=executions,
        events=events,
        suno_tasks={
            "t3": {"status": "PENDING", "callbacks_sent": 0},
            "t4": {"status": "SUCCESS", "callbacks_sent": 0},
        },
        worker_metrics=series(worker_success_total=3, worker_failure_total=5, jobs_finished_total=1),
        intake_metrics={"jobs_started_total": {(("pipeline", "video"),): 2.0}},
        api_metrics={"jobs_started_total": {(("pipeline", "music_clips"),): 2.0}},
        dlq_metrics=series(worker_dlq_total=1),
    )
    faults = FaultLog(
        worker_restarts=[{"at_s": 1.0}, {"at_s": 2.0}],
        firestore_outages=[{"at_s": 1.5, "seconds": 10.0, "epoch": T0.timestamp() + 1000}],
        restart_windows=[
            (T0.timestamp() + 200, T0.timestamp() + 201),
            (T0.timestamp() + 300, T0.timestamp() + 301),
        ],
    )
    return submissions, observed, faults


def failed_checks(result: dict[str, Any]) -> list[str]:
    return [c["name"] for c in result["checks"] if not c["ok"]]


def test_a_consistent_run_reconciles_clean():
    submissions, observed, faults = world()
    result = reconcile(submissions, observed, faults, PLAN)
    assert failed_checks(result) == [] and result["ok"]
    assert result["jobs"]["music_finished_by_poller"] == 1
    assert result["jobs"]["suno_never_finished"] == 1 and result["jobs"]["dead_lettered"] == 1


def test_an_accepted_job_missing_from_firestore_is_a_gap():
    submissions, observed, faults = world()
    observed.jobs = observed.jobs[1:]
    observed.worker_metrics = series(worker_success_total=2, worker_failure_total=5, jobs_finished_total=0)
    observed.intake_metrics = {"jobs_started_total": {(("pipeline", "video"),): 1.0}}
    observed.executions = [e for e in observed.executions if e.job_id != "job-1"]
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "every accepted job is in Firestore"
    ]


def test_two_jobs_for_one_idempotency_key_are_a_gap():
    submissions, observed, faults = world()
    twin = observed.jobs[0].model_copy(update={"job_id": "job-1b"})
    observed.jobs.append(twin)
    observed.events[twin.job_id] = observed.events["job-1"]
    observed.intake_metrics = {"jobs_started_total": {(("pipeline", "video"),): 3.0}}
    observed.worker_metrics = series(worker_success_total=3, worker_failure_total=5, jobs_finished_total=2)
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "one job per idempotency key in Firestore"
    ]


def test_two_job_ids_answered_for_one_key_are_a_gap():
    submissions, observed, faults = world()
    submissions[0] = replace(submissions[0], job_ids={"job-1", "job-9"})
    assert "one job id per idempotency key in the answers" in failed_checks(
        reconcile(submissions, observed, faults, PLAN)
    )


def test_a_job_left_running_is_a_gap():
    submissions, observed, faults = world()
    stuck = observed.jobs[0].model_copy(update={"stage": "processing", "status": JobStatus.RUNNING})
    observed.jobs[0] = stuck
    observed.events["job-1"] = observed.events["job-1"][:4]
    stuck.event_count = 4
    observed.worker_metrics = series(worker_success_total=3, worker_failure_total=5, jobs_finished_total=0)
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == ["every job in a terminal state"]


def test_a_dead_letter_without_its_execution_record_is_a_gap():
    submissions, observed, faults = world()
    observed.executions = [e.model_copy(update={"queued_to_dlq": False}) for e in observed.executions]
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "every dead-lettered job has an execution queued_to_dlq"
    ]


def test_a_second_terminal_event_is_a_gap():
    submissions, observed, faults = world()
    events = observed.events["job-4"]
    again = events[-1].model_copy(update={"event_id": "00006", "seq": 6, "actor": "suno-callback"})
    observed.events["job-4"] = [*events, again]
    observed.jobs[3] = observed.jobs[3].model_copy(update={"event_count": 6})
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "one terminal event per job, last event = job stage"
    ]


def test_a_poison_job_that_did_not_dead_letter_is_a_gap():
    submissions, observed, faults = world()
    observed.jobs[1] = observed.jobs[1].model_copy(
        update={"error": JobError(code="BAD_PAYLOAD", message="x")}
    )
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "poison jobs dead-lettered",
        "worker_dlq_total (DLQ analyzer) == dead-lettered jobs",
    ]


def test_counters_that_disagree_with_the_records_are_a_gap():
    submissions, observed, faults = world()
    observed.worker_metrics = series(worker_success_total=2, worker_failure_total=5, jobs_finished_total=1)
    [check] = [c for c in reconcile(submissions, observed, faults, PLAN)["checks"] if not c["ok"]]
    assert check["name"] == "worker_success_total agrees with the execution records"
    assert check["detail"] == {"metric": 2, "firestore": 3, "closed_between_scrape_and_kill": 0}


def test_a_count_lost_between_the_scrape_and_the_kill_is_tolerated():
    submissions, observed, faults = world()
    # The published job's execution closed in the second after the scrape, before the kill.
    closed_at = datetime.fromtimestamp(faults.restart_windows[0][0] + 0.5, tz=UTC)
    observed.executions[0] = observed.executions[0].model_copy(update={"finished_at": closed_at})
    observed.worker_metrics = series(worker_success_total=2, worker_failure_total=5, jobs_finished_total=1)
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == []


def test_an_execution_left_in_progress_with_no_kill_or_outage_to_explain_it_is_a_gap():
    submissions, observed, faults = world()
    observed.executions.append(
        execution(observed.jobs[0], 2, ExecutionStatus.IN_PROGRESS).model_copy(update={"finished_at": None})
    )
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "executions left in progress only by a killed worker or the Firestore outage"
    ]


def test_a_fault_that_was_not_injected_is_a_gap():
    submissions, observed, faults = world()
    faults.worker_restarts = faults.worker_restarts[:1]
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "every planned fault was injected"
    ]


@pytest.mark.parametrize(
    "status,last_error,retryable,success",
    [
        (ExecutionStatus.SUCCESS, None, None, True),
        (ExecutionStatus.CANCELLED, None, None, True),
        (ExecutionStatus.FAIL, "superseded: job finished", False, True),
        (ExecutionStatus.FAIL, "superseded: job moved", True, False),
        (ExecutionStatus.FAIL, "VIDEO_SOURCE_UNAVAILABLE: 503", True, False),
    ],
)
def test_executions_are_filed_as_the_worker_counts_them(status, last_error, retryable, success):
    job = world()[1].jobs[0]
    record = execution(job, 1, status, last_error=last_error, retryable=retryable)
    assert worker_counted_success(record) is success


def test_a_music_job_the_api_did_not_count_as_started_is_a_gap():
    submissions, observed, faults = world()
    observed.api_metrics = {"jobs_started_total": {(("pipeline", "music_clips"),): 1.0}}
    assert failed_checks(reconcile(submissions, observed, faults, PLAN)) == [
        "jobs_started_total{pipeline=music_clips} == music_clips jobs in Firestore"
    ]


def with_a_cancel(seconds: float | None) -> tuple[list[Submission], Observed, FaultLog]:
    """The world plus a video job cancelled through the API (202) while its worker downloaded."""
    submissions, observed, faults = world()
    job = make_job(5, "video", "cancelled")
    events = timeline(job, ["received", "downloading", "cancelled"])
    message = "cancelled during step download in downloading; its outside call was abandoned"
    events[-1] = events[-1].model_copy(update={"message": message})
    observed.jobs.append(job.model_copy(update={"event_count": len(events)}))
    observed.events[job.job_id] = events
    observed.executions.append(execution(job, 1, ExecutionStatus.CANCELLED))
    observed.intake_metrics = {"jobs_started_total": {(("pipeline", "video"),): 3.0}}
    observed.worker_metrics = series(worker_success_total=4, worker_failure_total=5, jobs_finished_total=1)
    observed.worker_metrics["jobs_finished_total"][(("pipeline", "video"), ("status", "cancelled"))] = 1.0
    cancel = Submission(
        index=5,
        key="key-5",
        pipeline="video",
        cancel=True,
        job_ids={job.job_id},
        cancel_status=202,
        cancel_stage_asked="downloading",
        cancel_seconds=seconds,
    )
    return [*submissions, cancel], observed, faults


def test_each_cancel_is_timed_and_says_where_the_job_stopped():
    result = reconcile(*with_a_cancel(1.3), PLAN)
    assert failed_checks(result) == [] and result["ok"]
    cancels = result["faults"]["cancels"]
    assert cancels["count"] == 1 and cancels["answers"] == {"202": 1} and cancels["mid_step"] == 1
    assert cancels["seconds_to_cancelled"] == {"p50": 1.3, "max": 1.3}
    assert cancels["stopped_in"] == {"downloading (worker)": 1}


@pytest.mark.parametrize("seconds", [7.5, None])
def test_a_cancel_slower_than_five_seconds_or_never_seen_is_a_gap(seconds):
    result = reconcile(*with_a_cancel(seconds), PLAN)
    assert failed_checks(result) == ["cancelled through the API (200 or 202) means cancelled, within 5 s"]
