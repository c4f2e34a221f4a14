"""schemathesis against the running API: every operation in its /openapi.json, with generated valid
and invalid requests (examples, coverage, fuzzing and stateful phases), as an admin and as a plain
user. The run fails on any 5xx and on any answer that breaks the spec: status code, content type, headers,
body schema, invalid input accepted or valid input refused.

The service runs on 127.0.0.1 over the emulators with data in it (jobs in several states, a dead
letter, executions, audit records), so listings answer real rows and the stateful phase follows
them to the single-job routes. schemathesis runs as its own process (``st run``), exactly as it
would against a deployment; its seed is fixed so a CI failure replays locally, and the examples
per operation are bounded so the run stays around half a minute on two cores.

It runs twice: as an admin, and as a plain user who owns some of the jobs (admin-only routes then
answer 403, other users' jobs 404, both as the spec says). Both runs also send a reporting
service's key, which only the ingest routes read.

This module is also the run's hooks module (SCHEMATHESIS_HOOKS), for the refusals no schema can
predict.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from devtools.local.serve import BackgroundServer
from infra.bootstrap import bootstrap
from services.api import create_app
from services.auth import Role, hash_api_key, mint_token
from services.jobs.models import Execution, ExecutionStatus, JobCreate, JobError
from services.jobs.state_machine import Transition
from services.runtime import Runtime

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 25
SEED = 20250101
REPORTER_KEY = "rk_schemathesis_0123456789"
# Free-form maps a job stores (an ingest's input or result) must be storable by Firestore: no
# reserved ``__name__`` keys, no empty keys, no lone surrogates, bounded nesting. JSON Schema can
# say none of that for arbitrarily nested maps.
FREE_FORM_FIELDS = {"input", "result"}


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Which stages an ingest report may name, and what a dead letter's edited input must hold,
    depend on the job's pipeline, and Firestore's rules for free-form maps (above) are not JSON
    Schema's: a generated stage, input or map refused with a 400 naming it is the expected answer,
    not a failure. Everything else counts."""
    if getattr(failure, "code", None) == "ST202" and response.status_code == 400:
        try:
            body = json.loads(response.content)
        except ValueError:
            return True
        if body.get("error_field") in ("stage", "input"):
            return False
        locations = [p.get("loc", []) for p in body.get("problems", [])]
        # loc starts with the report type for ingest reports (a tagged union): look at two parts.
        return not (locations and all(FREE_FORM_FIELDS & set(map(str, loc[:2])) for loc in locations))
    return True


def seed(rt: Runtime) -> None:
    for i, outcome in enumerate(("queued", "running", "failed", "dead-lettered")):
        job, _ = rt.repo.create_job(
            JobCreate(
                pipeline="video",
                account_id="acc-1",
                scenario_id="scn-1",
                source_id=f"src-{i}",
                user_id=("alice", "bob")[i % 2],
                input={"videoUrl": "https://v/x.mp4"},
            )
        )
        if outcome != "queued":
            rt.repo.transition(job.job_id, Transition("downloading", actor="worker"))
        if outcome in ("failed", "dead-lettered"):
            code = "DEAD_LETTERED" if outcome == "dead-lettered" else "BOOM"
            rt.repo.transition(
                job.job_id,
                Transition("failed", actor="worker", error=JobError(code=code, message=code, retryable=True)),
            )
        execution = Execution(
            execution_id=f"m{i}-1",
            message_id=f"m{i}",
            job_id=job.job_id,
            workflow="video",
            subscription="video-worker",
            attempt=1,
            started_at=rt.repo.clock(),
            trace_id=job.trace_id,
        )
        rt.repo.start_execution(execution)
        rt.repo.finish_execution(
            execution.execution_id,
            ExecutionStatus.FAIL,
            last_error="boom",
            retryable=True,
            queued_to_dlq=outcome == "dead-lettered",
        )
        rt.repo.add_cost(job.job_id, "compute", 0.1 * (i + 1))
        rt.repo.record_audit(
            actor="user:alice", action="job.retry", target=job.job_id, params={}, result="ok"
        )


@pytest.fixture
def served_api(settings, clients, repo) -> Iterator[tuple[str, Runtime]]:  # repo: owns cleanup
    # Topics and pull subscriptions, so retries, replays, pauses and resumes really happen.
    bootstrap(settings.google_cloud_project, prefix=settings.topic_prefix)
    # runOnce needs a callback URL to accept a run; no Suno answers here, so its credit check
    # gives up after one try and the run is queued anyway.
    rt = Runtime(
        settings.model_copy(
            update={
                "public_base_url": "https://jobtrail.example",
                "external_max_attempts": 1,
                "ingest_api_key_hashes": {hash_api_key(REPORTER_KEY): "clip-render"},
            }
        ),
        clients,
    )
    seed(rt)
    with BackgroundServer(create_app(rt)) as server:
        yield server.url, rt


@pytest.mark.parametrize(("subject", "role"), [("schemathesis", Role.ADMIN), ("alice", Role.USER)])
def test_schemathesis_finds_no_server_error_and_no_answer_that_breaks_the_spec(served_api, subject, role):
    url, rt = served_api
    token = mint_token(rt.settings, subject, role)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        # The ingest routes take a reporting service's key (the others ignore it).
        "--header",
        f"X-Reporter-Key: {REPORTER_KEY}",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        # Our header carries the credentials; generated ones would only ever be refused.
        "--generation-with-security-parameters",
        "false",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.emulator.test_schemathesis_api",
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert selected and len(set(selected.groups())) == 1 and int(selected[1]) >= 14, output
