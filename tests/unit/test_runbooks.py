"""The runbooks quote the code's own limits and words: an operator who follows one looks for what the
worker really records, with the timeout it really has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.jobs.models import ExecutionStatus
from services.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DLQ_RUNBOOK = (REPO / "runbooks" / "dlq.md").read_text()
ENTRYPOINTS = yaml.safe_load((REPO / "terraform" / "entrypoints.yaml").read_text())


def deployed_handler_timeout() -> int:
    return int(ENTRYPOINTS["pipeline_worker"]["env"]["HANDLER_TIMEOUT_SECONDS"])


def test_the_dlq_runbook_gives_one_handler_timeout_the_one_deployed_and_the_default():
    timeout = deployed_handler_timeout()
    assert Settings.model_fields["handler_timeout_seconds"].default == timeout
    # Every "N s ... timeout" the runbook names for a handler is that one value.
    quoted = {int(n) for n in re.findall(r"(\d+) s handler timeout", DLQ_RUNBOOK)}
    quoted |= {int(n) for n in re.findall(r"HANDLER_TIMEOUT_SECONDS` \((\d+) s", DLQ_RUNBOOK)}
    quoted |= {int(n) // 1000 for n in re.findall(r"`action_duration_ms` near (\d+)", DLQ_RUNBOOK)}
    assert quoted == {timeout}
    # The worker's request timeout, which the handler timeout stays under, is the only other one.
    assert ENTRYPOINTS["pipeline_worker"]["timeout_seconds"] > timeout
    assert "60 s worker timeout" not in DLQ_RUNBOOK


def test_the_dlq_runbook_lists_exactly_the_statuses_an_execution_can_have():
    [listed] = re.findall(r"`status` \(([^)]*)\)", DLQ_RUNBOOK)
    assert {s.strip() for s in listed.split(",")} == {s.value for s in ExecutionStatus}
    assert "status `timeout`" in DLQ_RUNBOOK


def test_the_dlq_runbook_names_the_record_fields_the_worker_writes():
    from services.jobs.models import Execution

    for field in ("user_id", "request_id", "artifact_paths", "payload_snapshot", "action_duration_ms"):
        assert field in Execution.model_fields
        assert f"`{field}`" in DLQ_RUNBOOK
