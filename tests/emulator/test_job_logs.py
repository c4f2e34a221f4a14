"""The job page's reads on the emulators: a job's log lines followed live from the local stack's
JSON log files (only that job's, in order, ending after the job does), its overview (waiting,
retrying, stuck, finished), and another user's job answering as a missing one."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.api import create_app
from services.auth import mint_token
from services.jobs.models import Execution, ExecutionStatus, JobCreate
from services.jobs.state_machine import Transition
from services.runtime import Runtime
from services.settings import Settings
from services.telemetry.logging import LABELS_KEY

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(settings: Settings, clients, repo, tmp_path: Path) -> Runtime:  # repo: owns cleanup
    tuned = settings.model_copy(
        update={
            "jwt_secret": SecretStr("job-logs-tests-secret-of-enough-length"),
            "job_log_source": "files",
            "job_log_dir": str(tmp_path),
            "job_log_poll_seconds": 0.05,
            "job_log_linger_seconds": 0.3,
        }
    )
    return Runtime(tuned, clients)


def auth(rt: Runtime, sub: str = "alice", role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(rt.settings, sub, role)}"}


def make_job(rt: Runtime, user: str = "alice", source: str = "s1") -> str:
    job, _ = rt.repo.create_job(
        JobCreate(pipeline="video", account_id="a", scenario_id="s", source_id=source, user_id=user, input={})
    )
    return job.job_id


def log(path: Path, job_id: str, message: str, severity: str = "INFO") -> None:
    entry = {
        "severity": severity,
        "message": message,
        "time": "2026-01-01T00:00:00.000000Z",
        LABELS_KEY: {"jobId": job_id, "stage": "downloading"},
    }
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def frames(body: str) -> list[tuple[str, dict]]:
    out = []
    for block in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_a_jobs_lines_arrive_live_and_the_stream_ends_after_the_job(rt, tmp_path):
    job_id, other = make_job(rt), make_job(rt, source="s2")
    worker = tmp_path / "pipeline_worker.log"
    log(worker, job_id, "before the page opened")
    log(worker, other, "someone else's line")
    (tmp_path / "firestore.log").write_text("not json at all\n")

    def work() -> None:
        time.sleep(0.3)  # the stream is open by now: these arrive while it follows the job
        log(worker, job_id, "downloading", "INFO")
        log(tmp_path / "webhook_intake.log", job_id, "second process")
        log(worker, job_id, "it broke", "ERROR")
        time.sleep(0.2)
        rt.repo.transition(job_id, Transition("downloading", actor="worker"))
        rt.repo.transition(job_id, Transition("failed", actor="worker"))

    threading.Thread(target=work).start()
    client = create_app(rt).test_client()
    started = time.monotonic()
    response = client.get(f"/api/jobs/{job_id}/logs/stream", headers=auth(rt))
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    got = frames(response.get_data(as_text=True))
    assert time.monotonic() - started >= 0.5  # it followed the job, it did not just read once
    messages = [data["message"] for event, data in got if event == "log"]
    assert messages[0] == "before the page opened"
    assert set(messages) == {"before the page opened", "downloading", "second process", "it broke"}
    assert messages.index("downloading") < messages.index("it broke")
    assert got[0][0] == "hello" and got[-1] == ("end", {"jobId": job_id, "status": "failed"})
    assert {data["source"] for event, data in got if event == "log"} == {"pipeline_worker", "webhook_intake"}


def test_another_users_job_and_a_deployment_without_logs_answer_json_errors(rt):
    job_id = make_job(rt)
    client = create_app(rt).test_client()
    hidden = client.get(f"/api/jobs/{job_id}/logs/stream", headers=auth(rt, "bob"))
    assert hidden.status_code == 404 and hidden.json["error"] == "JOB_NOT_FOUND"
    overview = client.get(f"/api/jobs/{job_id}/overview", headers=auth(rt, "bob"))
    assert overview.status_code == 404 and overview.json["error"] == "JOB_NOT_FOUND"
    none = Runtime(rt.settings.model_copy(update={"job_log_source": "none"}), rt.clients)
    off = create_app(none).test_client().get(f"/api/jobs/{job_id}/logs/stream", headers=auth(rt))
    assert off.status_code == 404 and off.json["error"] == "LOGS_UNAVAILABLE"
    assert (
        create_app(none).test_client().get(f"/api/jobs/{job_id}/overview", headers=auth(rt)).json["logsLive"]
        is False
    )


def test_the_overview_says_waiting_retrying_stuck_or_finished(rt):
    client = create_app(rt).test_client()
    job_id = make_job(rt)

    def situation() -> dict:
        body = client.get(f"/api/jobs/{job_id}/overview", headers=auth(rt)).json
        return body["situation"]

    assert situation()["kind"] == "waiting" and "queue" in situation()["detail"]
    rt.repo.transition(job_id, Transition("downloading", actor="worker"))
    assert situation()["kind"] == "running"
    execution = Execution(
        execution_id="m1-1",
        message_id="m1",
        job_id=job_id,
        workflow="video",
        subscription="video-worker",
        attempt=1,
        started_at=rt.repo.clock(),
        trace_id="a-s-s1",
    )
    rt.repo.start_execution(execution)
    rt.repo.finish_execution("m1-1", ExecutionStatus.FAIL, last_error="SOURCE_TIMEOUT", retryable=True)
    retrying = situation()
    assert retrying["kind"] == "retrying" and "SOURCE_TIMEOUT" in retrying["detail"]
    assert retrying["nextDeliveryAfter"] is not None
    body = client.get(f"/api/jobs/{job_id}/overview", headers=auth(rt)).json
    assert [e["attempts"] for e in body["executions"]] == [1] and body["timeline"]["events"]

    # Stuck means overdue: nothing it waited for (here, the redelivery) came by its stuckAt.
    stuck_at = rt.repo.get_job(job_id).stuck_at
    assert stuck_at is not None
    later = stuck_at + timedelta(seconds=1)
    stale_rt = Runtime(rt.settings, rt.clients)
    stale_rt.repo.clock = lambda: later  # type: ignore[method-assign]
    stuck = create_app(stale_rt).test_client().get(f"/api/jobs/{job_id}/overview", headers=auth(rt)).json
    assert stuck["situation"]["kind"] == "stuck"

    rt.repo.transition(job_id, Transition("failed", actor="worker"))
    assert situation()["kind"] == "finished"
