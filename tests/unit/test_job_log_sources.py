"""Job log sources without a network: the local files' offsets, and Cloud Logging's position
(timestamp and insert id) against a stand-in for the client's list_entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.reads.job_logs import CloudLogSource, FileLogSource, log_source
from services.settings import Settings
from services.telemetry.logging import LABELS_KEY

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write(path: Path, job_id: str, message: str, *, newline: bool = True) -> None:
    entry = {"severity": "INFO", "message": message, "time": T0.isoformat(), LABELS_KEY: {"jobId": job_id}}
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + ("\n" if newline else ""))


def test_files_are_read_from_where_the_last_read_stopped_and_half_lines_wait(tmp_path):
    source = FileLogSource(tmp_path, 0.1)
    log = tmp_path / "pipeline_worker.log"
    write(log, "job_a", "one")
    write(log, "job_ab", "a longer id that starts the same")
    lines, position = source.read("job_a", None)
    assert [line.message for line in lines] == ["one"]
    write(log, "job_a", "two", newline=False)  # still being written
    lines, position = source.read("job_a", position)
    assert lines == []
    with log.open("a") as handle:
        handle.write("\n")
    lines, position = source.read("job_a", position)
    assert [line.message for line in lines] == ["two"] and lines[0].source == "pipeline_worker"


@dataclass
class Entry:
    timestamp: datetime
    insert_id: str
    payload: Any
    severity: str = "INFO"
    labels: dict[str, str] = field(default_factory=dict)
    resource: Any = None


class FakeLogging:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.filters: list[str] = []

    def list_entries(
        self, *, resource_names: list[str], filter_: str, order_by: str, page_size: int
    ) -> list[Entry]:
        self.filters.append(filter_)
        since = filter_.split('timestamp>="')[1].rstrip('"') if "timestamp>=" in filter_ else None
        return [e for e in self.entries if since is None or e.timestamp.isoformat() >= since]


def test_cloud_logging_is_asked_by_job_label_and_never_repeats_a_line():
    entries = [
        Entry(T0, "a", {"message": "first"}, labels={"jobId": "job_1", "stage": "downloading"}),
        Entry(T0, "b", "plain text", severity="ERROR"),
    ]
    fake = FakeLogging(entries)
    source = CloudLogSource("proj", 5.0, fake)
    lines, position = source.read("job_1", None)
    assert [(line.message, line.severity, line.stage) for line in lines] == [
        ("first", "INFO", "downloading"),
        ("plain text", "ERROR", None),
    ]
    assert fake.filters[0] == 'labels.jobId="job_1"'
    fake.entries.append(Entry(T0 + timedelta(seconds=1), "c", {"message": "later"}))
    lines, _ = source.read("job_1", position)
    assert [line.message for line in lines] == ["later"]
    assert f'timestamp>="{T0.isoformat()}"' in fake.filters[1]


def test_the_source_follows_the_settings():
    assert log_source(Settings()) is None
    assert isinstance(log_source(Settings(job_log_source="files", job_log_dir="/tmp")), FileLogSource)
    cloud = log_source(Settings(job_log_source="cloud"), logging_client=FakeLogging([]))
    assert isinstance(cloud, CloudLogSource) and cloud.poll_seconds == 5.0
