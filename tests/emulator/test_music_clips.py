"""Music Clips end to end on the emulators: runOnce over real HTTP (the API app, with Bearer tokens),
the worker behind a real Pub/Sub push subscription, Suno's callback over real HTTP from the fake
Suno, the poller and the sweeper called directly (with time travel instead of real waits)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import flask
import pytest
import requests
from pydantic import SecretStr

from devtools.fakes.world import FakeWorld
from devtools.local.serve import BackgroundServer, function_app
from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import mint_token
from services.control import retry_job
from services.jobs.models import Job, Liveness, build_job, heartbeat_of, liveness_of
from services.jobs.state_machine import Transition
from services.music_clips.config import callback_token, suno_callback_url
from services.music_clips.poller import poll_music_jobs
from services.pipelines.music_clips import MUSIC_CLIPS, SUNO_ANSWER_PENDING, request_generation
from services.pipelines.spec import JobStatus
from services.pipelines.steps import RetryLater, StepContext, StepResult
from services.reads.queries import SummaryQuery, summary_specs
from services.runtime import Runtime
from services.settings import Settings
from services.sweeper import sweep_stale_jobs
from services.telemetry import Telemetry
from services.worker.http import handle_dead_letter, handle_push
from tests.emulator.conftest import TEST_BACKOFF
from tests.helpers import wait_for

pytestmark = pytest.mark.emulator

ALL_STAGES = [s.name for s in MUSIC_CLIPS.stages]
FAR_FUTURE = timedelta(hours=1)
UNKNOWN_JOB = "job_1703616000000_abc123"
# Seed 002's STAGE_99 example, letter for letter: the front end shows it as is.
SEED_TIMEOUT_TEXT = (
    "Превышено время ожидания генерации (10 минут). Проверьте статус в Suno или попробуйте снова."
)


@dataclass
class MusicStack:
    rt: Runtime
    api_url: str
    world: FakeWorld

    def auth(self, caller: str | None, role: str = "user") -> dict[str, str]:
        """A Bearer token for ``caller`` (none for None)."""
        if caller is None:
            return {}
        return {"Authorization": f"Bearer {mint_token(self.rt.settings, caller, role)}"}

    def run_once(
        self,
        channel_id: str = "channel_xyz",
        *,
        caller: str | None = "user-1",
        role: str = "user",
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> requests.Response:
        return requests.post(
            f"{self.api_url}/api/music-clips/channels/{channel_id}/runOnce",
            json=body,
            headers={**self.auth(caller, role), **(headers or {})},
            timeout=10,
        )

    def get_job(self, job_id: str, *, caller: str | None = "user-1", role: str = "user") -> requests.Response:
        return requests.get(
            f"{self.api_url}/api/music-clips/jobs/{job_id}", headers=self.auth(caller, role), timeout=10
        )

    def callback(self, body: dict[str, Any], job: Job, *, token: str | None = None) -> requests.Response:
        """POST ``body`` to the callback URL issued for ``job``'s current attempt (``token``: instead)."""
        url = suno_callback_url(self.rt.settings, job)
        assert url is not None
        if token is not None:
            url = url.replace(
                f"token={callback_token(self.rt.settings, job.job_id, job.attempt)}", f"token={token}"
            )
        return requests.post(url, json=body, timeout=10)

    def reaches(self, job_id: str, stage: str, timeout: float = 30) -> Job:
        def probe() -> Job | None:
            job = self.rt.repo.get_job(job_id)
            return job if job.stage == stage else None

        job = wait_for(probe, timeout=timeout, what=f"job {job_id} to reach {stage}")
        assert job is not None  # wait_for returns only a truthy probe
        return job


def complete_callback(task_id: str | None, audio_url: str = "https://cdn.example/late.mp3") -> dict[str, Any]:
    return {
        "code": 200,
        "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": task_id, "data": [{"audio_url": audio_url}]},
    }


@pytest.fixture
def music_settings(pipeline_settings: Settings) -> Settings:
    # The fake Suno charges one credit per generation.
    return pipeline_settings.model_copy(
        update={
            "suno_credits_per_generation": 1,
            "suno_poll_interval_seconds": 1.0,
            "jwt_secret": SecretStr("music-emulator-tests-secret-of-enough-length"),
        }
    )


class LateApp:
    """A WSGI app built once the server's URL is known (the API's public URL is where Suno calls
    back, and ``create_app`` takes the runtime whole)."""

    def __init__(self) -> None:
        self.app: flask.Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "served before the app was built"
        return self.app(environ, start_response)


def serve_music(
    settings: Settings, clients, world: FakeWorld, *, public: bool = True
) -> Iterator[MusicStack]:
    late = LateApp()
    with BackgroundServer(late) as api:
        rt = Runtime(settings.model_copy(update={"public_base_url": api.url if public else None}), clients)
        late.app = create_app(rt)  # the API service, with the Music Clips blueprint in it
        with (
            BackgroundServer(function_app(handle_push, rt, "worker")) as worker,
            BackgroundServer(function_app(handle_dead_letter, rt, "dlq")) as dlq,
        ):
            bootstrap(
                rt.settings.google_cloud_project,
                prefix=rt.settings.topic_prefix,
                backoff=TEST_BACKOFF,
                push_endpoints={"pipeline_worker": worker.url, "dlq_analyzer": dlq.url},
            )
            try:
                yield MusicStack(rt=rt, api_url=api.url, world=world)
            finally:
                if "suno" in rt.__dict__:
                    rt.suno.close()


@pytest.fixture
def music(music_settings, clients, repo, world) -> Iterator[MusicStack]:  # repo: owns cleanup
    yield from serve_music(music_settings, clients, world)


@pytest.fixture
def music_without_public_url(music_settings, clients, repo, world) -> Iterator[MusicStack]:
    yield from serve_music(music_settings, clients, world, public=False)


def test_run_once_answers_202_then_the_callback_brings_success(music):
    # Suno takes a while, as it does: long enough for the worker to have stored the task id.
    music.world.configure(suno={"callback_delay_s": 2.0})
    # Seed 002's front end names the user in the body too: the caller's own id is accepted.
    response = music.run_once(userId="user-1", prompt="calm lo-fi")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["success"] is accepted["ok"] is True
    assert accepted["stage"] == "STAGE_10_REQUEST_ACCEPTED" and accepted["channelId"] == "channel_xyz"
    assert (
        accepted["jobId"].startswith("job_") and accepted["createdAt"].endswith("Z") and accepted["message"]
    )

    job = music.reaches(accepted["jobId"], "STAGE_50_SUNO_SUCCESS")
    events = music.rt.repo.list_events(job.job_id)
    assert [e.to_stage for e in events] == ALL_STAGES
    assert events[-1].actor == "suno-callback"
    assert job.suno_task_id and job.result["audioUrl"].endswith(f"{job.suno_task_id}-1.mp3")
    assert job.trace_id == "user-1-music_clips-channel_xyz" and job.input["prompt"] == "calm lo-fi"
    assert job.cost.items["suno_credits"] == pytest.approx(0.01)
    stats = music.world.stats()
    assert stats["calls"]["suno.generate"] == 1 and stats["callbacks"] == {"sent": 1}

    view = music.get_job(job.job_id)
    assert view.status_code == 200 and view.headers["X-Request-Id"] == view.json()["requestId"]
    body = view.json()
    assert (
        body["stage"] == "STAGE_50_SUNO_SUCCESS" and body["progressText"] == "Музыка сгенерирована успешно!"
    )
    assert body["sunoTaskId"] == job.suno_task_id and body["audioUrl"] == job.result["audioUrl"]
    assert body["error"] is None and body["heartbeat"] == {"secondsSinceUpdate": 0, "isStale": False}
    assert body["requestId"].startswith("req_") and body["createdAt"].endswith("Z")
    # No poll is left scheduled for a finished job.
    assert music.rt.repo.find_due_suno_polls(music.rt.repo.clock() + FAR_FUTURE, 10) == []


@pytest.fixture
def traced_music(music_settings, clients, repo, world) -> Iterator[tuple[MusicStack, Telemetry]]:
    """The music stack with spans kept in memory, as deployed outside Google Cloud."""
    settings = music_settings.model_copy(update={"trace_exporter": "memory"})
    telemetry = Telemetry.create(settings)
    with telemetry.activated():
        for stack in serve_music(settings, clients, world):
            yield stack, telemetry
    telemetry.shutdown()


def test_a_run_stores_its_trace_id_and_the_job_page_links_to_that_trace(traced_music):
    music, telemetry = traced_music
    music.world.configure(suno={"callback_delay_s": 0.5})
    job = music.reaches(music.run_once().json()["jobId"], "STAGE_50_SUNO_SUCCESS")
    assert job.otel_trace_id is not None and len(job.otel_trace_id) == 32

    def worker_span_of_trace() -> list[Any] | None:
        spans = telemetry.span_exporter.get_finished_spans()
        mine = [s.name for s in spans if f"{s.context.trace_id:032x}" == job.otel_trace_id]
        return mine if any(name.startswith("worker ") for name in mine) else None

    # runOnce's request and the worker's delivery are one trace, the one the job names.
    names = wait_for(worker_span_of_trace, timeout=10, what="the worker's span in the run's trace")
    assert any("runOnce" in name for name in names or []), names
    detail = requests.get(
        f"{music.api_url}/api/jobs/{job.job_id}", headers=music.auth("user-1"), timeout=10
    ).json()
    assert detail["otelTraceId"] == job.otel_trace_id
    assert f"tid={job.otel_trace_id}" in detail["links"]["trace"]


def stale_jobs_at(rt: Runtime, at) -> int:
    """The header's "Stale" count as of ``at``."""
    return int(rt.repo.aggregate("jobs", summary_specs(SummaryQuery(), at, None).stale, count=True)["count"])


def test_a_four_minute_generation_with_a_late_callback_reads_not_stale_throughout(music):
    music.world.configure(suno={"result": "never"})  # Suno keeps saying "generating"
    job = music.reaches(music.run_once().json()["jobId"], "STAGE_40_SUNO_PENDING")
    repo, start = music.rt.repo, music.rt.repo.clock()
    for second in range(0, 245, 5):
        at = start + timedelta(seconds=second)
        if second and second % 60 == 0:
            poll_music_jobs(music.rt, now=at)  # Cloud Scheduler's one-minute tick
        current = repo.get_job(job.job_id)
        assert liveness_of(current, at) is Liveness.WAITING, (second, current.stuck_at)
        assert not heartbeat_of(current, at).is_stale, second
        assert stale_jobs_at(music.rt, at) == 0, second
    assert music.world.stats()["calls"]["suno.record_info"] == 4
    music.world.finish_task(job.suno_task_id)  # Suno is done, and calls back
    music.reaches(job.job_id, "STAGE_50_SUNO_SUCCESS")


def test_a_job_whose_poller_stopped_reads_stale_within_a_minute_plus_grace(music):
    music.world.configure(suno={"result": "never"})
    job = music.reaches(music.run_once().json()["jobId"], "STAGE_40_SUNO_PENDING")
    assert job.next_poll_at is not None  # the first poll is due; no poller ever comes
    grace = timedelta(seconds=music.rt.settings.stale_after_seconds)
    before, after = job.next_poll_at + grace, job.next_poll_at + grace + timedelta(seconds=1)
    assert not heartbeat_of(job, before).is_stale and stale_jobs_at(music.rt, before) == 0
    assert heartbeat_of(job, after).is_stale and liveness_of(job, after) is Liveness.STUCK
    assert stale_jobs_at(music.rt, after) == 1
    assert after - music.rt.repo.clock() <= timedelta(seconds=61) + grace


def test_jobs_finished_by_the_callback_the_poller_or_the_sweeper_are_counted_finished(music, mocker):
    metrics = mocker.patch("services.jobs.repository.get_metrics").return_value
    by_callback = waiting_job(music)
    music.world.finish_task(by_callback.suno_task_id)
    music.reaches(by_callback.job_id, "STAGE_50_SUNO_SUCCESS")
    by_poller = waiting_job(music)
    music.world.finish_task(by_poller.suno_task_id, "fail", call_back=False)
    poll_music_jobs(music.rt, now=music.rt.repo.clock() + FAR_FUTURE)
    by_sweeper = waiting_job(music)
    sweep_stale_jobs(music.rt, now=music.rt.repo.clock() + timedelta(minutes=11))
    counted = sorted(str(c.args[1]) for c in metrics.job_finished.call_args_list)
    assert counted == ["failed", "succeeded", "timed_out"], metrics.job_finished.call_args_list
    assert all(c.args[0] == "music_clips" for c in metrics.job_finished.call_args_list)
    assert music.rt.repo.get_job(by_sweeper.job_id).stage == "STAGE_99_TIMEOUT"


def test_with_callbacks_off_the_poller_finishes_the_job_with_backoff(music):
    music.world.configure(suno={"callbacks_enabled": False, "callback_delay_s": 5.0})
    job_id = music.run_once().json()["jobId"]
    job = music.reaches(job_id, "STAGE_40_SUNO_PENDING")
    repo = music.rt.repo

    # A poll while Suno is still generating: a sign of life, and the next poll backs off.
    assert music.world.stats()["suno_tasks"][job.suno_task_id]["status"] == "PENDING"
    now = repo.clock() + timedelta(seconds=2)
    first = poll_music_jobs(music.rt, now=now)
    assert (first.due, first.polled, first.outcomes) == (1, 1, {"pending": 1})
    assert poll_music_jobs(music.rt, now=now).due == 0  # claimed: not due again at the same moment
    [due] = repo.find_due_suno_polls(now + FAR_FUTURE, 10)
    assert due.polls == 1 and repo.get_job(job_id).stage == "STAGE_40_SUNO_PENDING"

    wait_for(
        lambda: music.world.stats()["suno_tasks"][job.suno_task_id]["status"] == "SUCCESS",
        what="the fake Suno task to finish",
    )
    second = poll_music_jobs(music.rt, now=now + FAR_FUTURE)
    assert second.outcomes == {"succeeded": 1}
    job = repo.get_job(job_id)
    assert job.stage == "STAGE_50_SUNO_SUCCESS" and job.result["audioUrl"].endswith(".mp3")
    events = repo.list_events(job_id)
    assert [e.to_stage for e in events] == ALL_STAGES and events[-1].actor == "suno-poller"
    assert repo.find_due_suno_polls(now + 2 * FAR_FUTURE, 10) == []

    # The first of poll and callback wins: a callback now changes nothing.
    late = music.callback(complete_callback(job.suno_task_id), job)
    assert late.status_code == 200 and late.json()["outcome"] == "already_finished"
    assert repo.list_events(job_id) == events and repo.get_job(job_id).result == job.result


def test_two_pollers_at_once_ask_suno_once(music):
    job = waiting_job(music)
    now = music.rt.repo.clock() + timedelta(minutes=1)
    start = threading.Barrier(2)
    reports = []

    def poll() -> None:
        start.wait()
        reports.append(poll_music_jobs(music.rt, now=now))

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(reports) == 2 and sum(r.polled for r in reports) == 1
    assert music.world.stats()["calls"]["suno.record_info"] == 1
    [due] = music.rt.repo.find_due_suno_polls(now + FAR_FUTURE, 10)
    assert due.job.job_id == job.job_id and due.polls == 1


def test_duplicate_and_intermediate_callbacks_apply_once(music):
    music.world.configure(
        suno={"callback_delay_s": 2.0, "duplicate_callbacks": True, "intermediate_callbacks": True}
    )
    job_id = music.run_once().json()["jobId"]
    music.reaches(job_id, "STAGE_50_SUNO_SUCCESS")
    # text, first and complete, each twice; every one answered 200
    wait_for(lambda: music.world.stats()["callbacks"].get("sent") == 6, what="six callbacks delivered")
    assert "failed" not in music.world.stats()["callbacks"]
    events = music.rt.repo.list_events(job_id)
    assert [e.to_stage for e in events] == ALL_STAGES


def test_a_callback_that_outruns_the_worker_storing_the_task_id_still_finishes_the_job(music):
    # Suno's answer to generate comes back a second late (the first stalled call is the intake's
    # credit check), while its callback comes at once: the callback finds no stored task id.
    music.world.configure(
        suno={"callback_delay_s": 0.0, "lose_response_next_n": 2, "lost_response_stall_ms": 1000}
    )
    job_id = music.run_once().json()["jobId"]
    job = music.reaches(job_id, "STAGE_50_SUNO_SUCCESS")
    wait_for(lambda: music.world.stats()["callbacks"].get("sent") == 1, what="the callback answered 200")
    assert "failed" not in music.world.stats()["callbacks"]
    events = music.rt.repo.list_events(job_id)
    assert [e.to_stage for e in events] == [
        "STAGE_10_REQUEST_ACCEPTED",
        "STAGE_20_SUNO_REQUEST_SENT",
        "STAGE_50_SUNO_SUCCESS",
    ]
    assert events[-1].actor == "suno-callback" and job.suno_task_id
    assert job.result["audioUrl"].endswith(f"{job.suno_task_id}-1.mp3")
    # The worker's late commit of STAGE_30 found the job finished and let the message go.
    wait_for(
        lambda: [e.status.value for e in music.rt.repo.list_executions(job_id)] == ["fail"],
        what="the worker's attempt closed as superseded",
    )
    [execution] = music.rt.repo.list_executions(job_id)
    assert execution.last_error.startswith("superseded") and execution.retryable is False
    assert music.world.stats()["calls"]["suno.generate"] == 1


def test_a_redelivery_after_a_lost_generate_answer_waits_for_the_task_instead_of_paying_again(music):
    # Suno creates the task but its answer never arrives in time (the first lost answer is the
    # credit check's); nor does any callback, for now.
    music.world.configure(
        suno={
            "callbacks_enabled": False,
            "result": "never",
            "lose_response_next_n": 2,
            "lost_response_stall_ms": 3000,  # past the client's 2 s timeout
        }
    )
    job_id = music.run_once().json()["jobId"]
    repo = music.rt.repo

    def a_redelivery_that_waited():
        executions = repo.list_executions(job_id)
        return any((e.last_error or "").startswith("SUNO_ANSWER_PENDING") for e in executions)

    wait_for(a_redelivery_that_waited, timeout=30, what="a redelivery waiting for the lost answer")
    assert music.world.stats()["calls"]["suno.generate"] == 1
    [task_id] = music.world.stats()["suno_tasks"]
    music.world.finish_task(task_id)  # the task calls back, naming the job and attempt
    job = music.reaches(job_id, "STAGE_50_SUNO_SUCCESS")
    assert job.suno_task_id == task_id and music.world.stats()["calls"]["suno.generate"] == 1


def test_a_text_callback_names_the_task_for_a_redelivery_that_lost_generates_answer(music):
    music.world.configure(
        suno={
            "callbacks_enabled": False,
            "result": "never",
            "lose_response_next_n": 2,
            "lost_response_stall_ms": 3000,
        }
    )
    job_id = music.run_once().json()["jobId"]
    [task_id] = wait_for(lambda: list(music.world.stats()["suno_tasks"]), what="the task Suno created")
    job = music.rt.repo.get_job(job_id)
    text = {"code": 200, "msg": "Text done", "data": {"callbackType": "text", "task_id": task_id, "data": []}}
    assert music.callback(text, job).json()["outcome"] == "pending"
    # The redelivery carries on with that task: no second generation.
    pending = music.reaches(job_id, "STAGE_40_SUNO_PENDING")
    assert pending.suno_task_id == task_id and music.world.stats()["calls"]["suno.generate"] == 1


def test_a_callback_for_an_earlier_attempts_task_is_not_taken_for_the_retry(music):
    job = waiting_job(music)
    old_task = job.suno_task_id
    repo = music.rt.repo
    sweep_stale_jobs(music.rt, now=repo.clock() + timedelta(minutes=11))
    # The retry asks Suno again; this time Suno neither answers nor calls back for a while.
    music.world.configure(suno={"callbacks_enabled": False, "result": "never"})
    retried = retry_job(music.rt, job.job_id, actor="test")
    assert retried.attempt == 2 and retried.suno_task_id is None
    again = music.reaches(job.job_id, "STAGE_40_SUNO_PENDING")
    assert again.suno_task_id and again.suno_task_id != old_task

    # The first attempt's task finishes late and calls back with the first attempt's URL.
    late = music.callback(complete_callback(old_task), job)  # job as read then: attempt 1
    assert late.status_code == 404 and late.json()["error"] == "JOB_NOT_FOUND"
    assert repo.get_job(job.job_id).stage == "STAGE_40_SUNO_PENDING"


def test_the_poller_leaves_a_schedule_armed_after_it_read_the_job(music, mocker):
    """The poller reads a retried job with no task id yet (nothing to poll), and before it acts the
    retry's worker stores the new task and arms a new schedule: that schedule stays."""
    job = waiting_job(music)
    repo = music.rt.repo
    repo.update_fields(job.job_id, suno_task_id=None)  # as a retry leaves it
    [stale] = repo.find_due_suno_polls(repo.clock() + FAR_FUTURE, 10)
    repo.update_fields(job.job_id, suno_task_id="task-of-the-retry")
    repo.schedule_suno_poll(job.job_id, repo.clock() + timedelta(seconds=15), polls=0)
    # The poller acts on what it read before those writes.
    mocker.patch.object(repo, "find_due_suno_polls", return_value=[stale])

    report = poll_music_jobs(music.rt, now=repo.clock() + FAR_FUTURE)
    assert (report.due, report.cleared, report.skipped, report.polled) == (1, 0, 1, 0), report
    mocker.stopall()
    [armed] = repo.find_due_suno_polls(repo.clock() + FAR_FUTURE, 10)
    assert armed.job.suno_task_id == "task-of-the-retry" and armed.polls == 0


def waiting_job(music: MusicStack) -> Job:
    """A job whose Suno task never finishes and never calls back."""
    music.world.configure(suno={"callbacks_enabled": False, "result": "never"})
    job = music.reaches(music.run_once().json()["jobId"], "STAGE_40_SUNO_PENDING")
    assert job.suno_task_id  # the worker stored it on the way to STAGE_40
    return job


def test_a_task_that_never_finishes_times_out_and_a_late_callback_changes_nothing(music):
    job = waiting_job(music)
    repo = music.rt.repo
    assert sweep_stale_jobs(music.rt, now=repo.clock() + timedelta(minutes=5)).timed_out == 0

    report = sweep_stale_jobs(music.rt, now=repo.clock() + timedelta(minutes=11))
    assert (report.found, report.timed_out, report.by_pipeline) == (1, 1, {"music_clips": 1})
    timed_out = repo.get_job(job.job_id)
    assert timed_out.stage == "STAGE_99_TIMEOUT" and timed_out.status is JobStatus.TIMED_OUT
    assert timed_out.error.code == "DEADLINE_EXCEEDED" and timed_out.error.message == SEED_TIMEOUT_TEXT
    events = repo.list_events(job.job_id)
    assert events[-1].actor == "sweeper" and "STAGE_40_SUNO_PENDING" in events[-1].message
    assert "600s limit" in events[-1].message  # operators keep the sweeper's explanation

    late = music.callback(complete_callback(job.suno_task_id), job)
    assert late.status_code == 200 and late.json()["outcome"] == "already_finished"
    # The poller finds the leftover schedule, clears it, and does not bother Suno.
    polled = poll_music_jobs(music.rt, now=repo.clock() + FAR_FUTURE)
    assert (polled.due, polled.cleared, polled.polled) == (1, 1, 0)
    assert "suno.record_info" not in music.world.stats()["calls"]
    assert repo.list_events(job.job_id) == events and repo.get_job(job.job_id).stage == "STAGE_99_TIMEOUT"

    body = music.get_job(job.job_id).json()
    assert body["stage"] == "STAGE_99_TIMEOUT" and body["progressText"] == "Превышено время ожидания"
    assert body["error"] == SEED_TIMEOUT_TEXT and body["errorCode"] == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_callback_with_a_bad_token_is_401_and_changes_nothing(music, token):
    job = waiting_job(music)
    events = music.rt.repo.list_events(job.job_id)
    secret = music.rt.settings.suno_callback_token.get_secret_value()
    response = music.callback(complete_callback(job.suno_task_id), job, token=token)
    assert response.status_code == 401 and response.json()["error"] == "UNAUTHORIZED"
    assert secret not in response.text
    assert music.rt.repo.list_events(job.job_id) == events
    assert music.rt.repo.get_job(job.job_id).stage == "STAGE_40_SUNO_PENDING"


def test_the_callback_url_carries_no_secret_only_a_token_for_its_job_attempt(music):
    job = waiting_job(music)
    url = suno_callback_url(music.rt.settings, job)
    assert url is not None and music.rt.settings.suno_callback_token.get_secret_value() not in url
    # The URL the fake Suno was handed is exactly that one.
    assert music.world.task_callback_url(job.suno_task_id) == url


def test_another_jobs_callback_url_opens_nothing_for_this_job(music):
    job = waiting_job(music)
    other = waiting_job(music)
    events = music.rt.repo.list_events(job.job_id)
    # other's URL (say, read from a request log) with job's task in the body:
    forged = music.callback(complete_callback(job.suno_task_id), other)
    assert forged.status_code == 404
    # ...or job's id in other's URL with other's token:
    url = suno_callback_url(music.rt.settings, other)
    assert url is not None
    swapped = requests.post(
        url.replace(other.job_id, job.job_id), json=complete_callback(job.suno_task_id), timeout=10
    )
    assert swapped.status_code == 401
    assert music.rt.repo.list_events(job.job_id) == events
    assert "suno.record_info" not in music.world.stats()["calls"]


def test_a_replayed_callback_url_after_the_job_finished_or_was_retried_changes_nothing(music):
    job = waiting_job(music)
    music.world.finish_task(job.suno_task_id)
    done = music.reaches(job.job_id, "STAGE_50_SUNO_SUCCESS")
    events = music.rt.repo.list_events(job.job_id)
    replay = music.callback(complete_callback(job.suno_task_id, "https://evil.example/x.mp3"), job)
    assert replay.status_code == 200 and replay.json()["outcome"] == "already_finished"
    assert music.rt.repo.get_job(job.job_id).result == done.result
    assert music.rt.repo.list_events(job.job_id) == events

    # A timed-out then retried job: the first attempt's URL does not reach the second attempt.
    first = waiting_job(music)
    sweep_stale_jobs(music.rt, now=music.rt.repo.clock() + timedelta(minutes=11))
    retry_job(music.rt, first.job_id, actor="test")
    second = music.reaches(first.job_id, "STAGE_40_SUNO_PENDING")
    stale = music.callback(complete_callback(second.suno_task_id), first)  # attempt 1's URL
    assert stale.status_code == 404
    assert music.rt.repo.get_job(first.job_id).stage == "STAGE_40_SUNO_PENDING"


def test_a_forged_success_for_a_task_suno_reports_pending_is_not_applied(music):
    job = waiting_job(music)
    forged = music.callback(complete_callback(job.suno_task_id, "https://evil.example/x.mp3"), job)
    assert forged.status_code == 200 and forged.json()["outcome"] == "pending"
    current = music.rt.repo.get_job(job.job_id)
    assert current.stage == "STAGE_40_SUNO_PENDING" and "audioUrl" not in current.result
    assert music.world.stats()["calls"]["suno.record_info"] == 1  # Suno was asked, and said pending
    # When Suno is really done, the job takes Suno's own audio URL.
    music.world.finish_task(job.suno_task_id)
    done = music.reaches(job.job_id, "STAGE_50_SUNO_SUCCESS")
    assert done.result["audioUrl"].endswith(f"{job.suno_task_id}-1.mp3")


def test_callback_for_a_task_that_is_not_the_attempts_is_404(music):
    job = waiting_job(music)
    response = music.callback(complete_callback(f"unknown-{uuid.uuid4().hex[:6]}"), job)
    assert response.status_code == 404 and response.json()["error"] == "JOB_NOT_FOUND"
    assert music.rt.repo.get_job(job.job_id).stage == "STAGE_40_SUNO_PENDING"


def test_malformed_callback_is_400(music):
    job = waiting_job(music)
    response = music.callback({"code": 200, "data": {"callbackType": "complete"}}, job)
    assert response.status_code == 400 and response.json()["error"] == "INVALID_INPUT"


def test_without_a_public_url_run_once_is_400_and_the_failed_job_is_kept(music_without_public_url):
    music = music_without_public_url
    response = music.run_once()
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "CALLBACK_URL_NOT_CONFIGURED" and body["success"] is False
    assert body["message"] == "Callback URL not configured. Set PUBLIC_BASE_URL environment variable."
    job = music.rt.repo.get_job(body["jobId"])
    assert job.stage == "STAGE_90_FAILED" and job.error.code == "CALLBACK_URL_NOT_CONFIGURED"
    assert job.queued_message_id is None  # never queued
    assert [e.to_stage for e in music.rt.repo.list_events(job.job_id)] == [
        "STAGE_10_REQUEST_ACCEPTED",
        "STAGE_90_FAILED",
    ]
    assert "suno.generate" not in music.world.stats()["calls"]
    view = music.get_job(job.job_id).json()
    assert view["stage"] == "STAGE_90_FAILED" and view["errorCode"] == "CALLBACK_URL_NOT_CONFIGURED"


def test_without_credits_run_once_is_402_and_the_failed_job_is_kept(music):
    music.world.configure(suno={"credits": 0})
    response = music.run_once()
    assert response.status_code == 402
    body = response.json()
    assert body["error"] == "SUNO_NO_CREDITS" and body["credits"] == 0 and body["requestId"]
    assert body["message"] == "Недостаточно кредитов Suno для генерации. Пополните баланс."
    job = music.rt.repo.get_job(body["jobId"])
    assert job.stage == "STAGE_90_FAILED" and job.error.code == "SUNO_NO_CREDITS" and job.error.retryable
    assert job.queued_message_id is None and "suno.generate" not in music.world.stats()["calls"]


def test_when_the_credit_check_cannot_run_a_refused_generation_fails_the_job(music):
    # The credit check meets a 503 (one attempt, so runOnce is not held up) and lets the run
    # through; Suno then refuses the generation itself for credits.
    music.world.configure(suno={"credits": 0, "fail_next_n": 1})
    response = music.run_once()
    assert response.status_code == 202, response.text
    job = music.reaches(response.json()["jobId"], "STAGE_90_FAILED")
    assert job.error.code == "SUNO_NO_CREDITS" and job.error.stage == "STAGE_20_SUNO_REQUEST_SENT"
    assert music.world.stats()["calls"]["suno.generate"] == 1  # not retried: topping up is a person's job
    view = music.get_job(job.job_id).json()
    assert view["errorCode"] == "SUNO_NO_CREDITS" and view["progressText"] == "Ошибка при генерации"


@pytest.mark.parametrize("suno", [{"latency_ms": 5000}, {"fail_next_n": 1000}], ids=["slow", "down"])
def test_a_slow_or_down_credit_endpoint_is_asked_once_with_a_budget_and_runs_are_queued(music, suno):
    music.world.configure(suno={**suno, "callbacks_enabled": False})
    responses = [music.run_once(f"channel_{i}") for i in range(6)]
    assert [r.status_code for r in responses] == [202] * 6, [r.text for r in responses]
    # One budgeted look per 30 s: the other five runs reuse "could not tell" and are queued at once.
    assert music.world.stats()["calls"]["suno.credit"] == 1
    for response in responses:
        job = music.rt.repo.get_job(response.json()["jobId"])
        assert job.queued_message_id is not None and job.stage != "STAGE_90_FAILED"


def test_suno_generation_failure_reported_by_callback_fails_the_job(music):
    music.world.configure(suno={"callback_delay_s": 2.0, "result": "fail"})
    job = music.reaches(music.run_once().json()["jobId"], "STAGE_90_FAILED")
    assert job.error.code == "SUNO_GENERATION_FAILED" and "Audio generation failed." in job.error.message
    assert job.error.stage == "STAGE_40_SUNO_PENDING"


def test_without_credentials_nothing_is_started_or_shown(music):
    job = waiting_job(music)
    for refused in (
        music.run_once(caller=None, userId="user-1"),
        music.run_once(caller=None, headers={"x-user-id": "user-1"}),  # a header is not a credential
        music.get_job(job.job_id, caller=None),
    ):
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "UNAUTHORIZED" and refused.json()["requestId"].startswith("req_")
        assert refused.headers["X-Request-Id"] == refused.json()["requestId"]
    assert music.rt.repo.count_jobs() == 1


def test_get_of_unknown_job_is_404(music):
    missing = music.get_job(UNKNOWN_JOB)
    assert missing.status_code == 404
    body = missing.json()
    assert body == {
        "success": False,
        "ok": False,
        "error": "JOB_NOT_FOUND",
        "message": f"Job {UNKNOWN_JOB} not found",
        "requestId": body["requestId"],
    }
    assert music.rt.repo.count_jobs() == 0


def without_request_id(response: requests.Response) -> dict[str, Any]:
    return {k: v for k, v in response.json().items() if k != "requestId"}


def test_another_users_job_answers_exactly_like_a_missing_one(music):
    job = waiting_job(music)
    assert music.get_job(job.job_id, caller="user-1").status_code == 200
    stranger = music.get_job(job.job_id, caller="user-2")
    missing = music.get_job(UNKNOWN_JOB, caller="user-2")
    assert stranger.status_code == missing.status_code == 404
    assert without_request_id(stranger) == {
        **without_request_id(missing),
        "message": f"Job {job.job_id} not found",
    }
    assert stranger.json()["requestId"] != missing.json()["requestId"]
    assert set(stranger.headers) == set(missing.headers)


def test_an_admin_reads_any_job(music):
    job = waiting_job(music)
    view = music.get_job(job.job_id, caller="ops-admin", role="admin")
    assert view.status_code == 200, view.text
    assert view.json()["jobId"] == job.job_id and view.json()["stage"] == "STAGE_40_SUNO_PENDING"


def test_a_user_cannot_start_a_run_for_another_user(music):
    refused = music.run_once(caller="user-1", userId="user-2")
    assert refused.status_code == 403 and refused.json()["error"] == "FORBIDDEN"
    assert refused.json()["requestId"].startswith("req_")
    assert music.rt.repo.count_jobs() == 0


def test_an_admin_starts_a_run_for_a_user_who_then_owns_it(music):
    music.world.configure(suno={"callbacks_enabled": False, "result": "never"})
    response = music.run_once(caller="ops-admin", role="admin", userId="user-2")
    assert response.status_code == 202, response.text
    job = music.rt.repo.get_job(response.json()["jobId"])
    assert job.user_id == "user-2" and job.trace_id == "user-2-music_clips-channel_xyz"
    assert music.rt.repo.list_events(job.job_id)[0].actor == "user:ops-admin"  # who asked, on record
    assert music.get_job(job.job_id, caller="user-2").status_code == 200
    assert music.get_job(job.job_id, caller="user-1").status_code == 404


def test_the_same_idempotency_key_starts_one_run(music):
    music.world.configure(suno={"callback_delay_s": 2.0})
    first, second = (music.run_once(headers={"Idempotency-Key": "click-1"}) for _ in range(2))
    assert first.status_code == second.status_code == 202
    assert first.json()["jobId"] == second.json()["jobId"] and second.json()["duplicate"] is True
    music.reaches(first.json()["jobId"], "STAGE_50_SUNO_SUCCESS")
    assert music.world.stats()["calls"]["suno.generate"] == 1


def test_two_deliveries_of_one_attempt_at_once_ask_suno_once(music, monkeypatch):
    # The soak's extra generations: a duplicate runOnce that raced the first queued the job twice,
    # and both deliveries read "not asked yet" before either recorded its ask.
    repo = music.rt.repo
    job, _ = repo.create_job(
        build_job(
            pipeline=MUSIC_CLIPS.name,
            account_id="user-1",
            scenario_id="music",
            source_id="channel_twice",
            user_id="user-1",
            input={"channelId": "channel_twice"},
        )
    )
    job = repo.transition(job.job_id, Transition("STAGE_20_SUNO_REQUEST_SENT", actor="worker")).job

    # Each delivery's first read of the job waits for the other's, so both read before either writes.
    # Only these two threads: the stack's own worker shares the runtime (and its repository).
    both_read = threading.Barrier(2, timeout=10)
    first_read_done = threading.local()
    read_job = repo.get_job

    def get_job_then_meet(job_id, *args, **kwargs):
        read = read_job(job_id, *args, **kwargs)
        is_delivery = threading.current_thread().name.startswith("same-attempt-delivery")
        if is_delivery and not getattr(first_read_done, "done", False):
            first_read_done.done = True
            both_read.wait()
        return read

    monkeypatch.setattr(repo, "get_job", get_job_then_meet)
    results: list[object] = []

    def deliver() -> None:
        ctx = StepContext(rt=music.rt, job=job, actor="worker", advance=lambda stage, **fields: job)
        try:
            results.append(request_generation(ctx))
        except RetryLater as exc:
            results.append(exc)

    deliveries = [threading.Thread(target=deliver, name=f"same-attempt-delivery-{n}") for n in range(2)]
    for delivery in deliveries:
        delivery.start()
    for delivery in deliveries:
        delivery.join(timeout=60)

    assert music.world.stats()["calls"]["suno.generate"] == 1
    [started] = [r for r in results if isinstance(r, StepResult)]
    [waiting] = [r for r in results if isinstance(r, RetryLater)]
    assert waiting.code == SUNO_ANSWER_PENDING
    [task_id] = music.world.stats()["suno_tasks"]
    assert started.fields == {"suno_task_id": task_id}
