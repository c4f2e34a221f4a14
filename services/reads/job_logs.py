"""A job's own log lines, read where its processes wrote them: the local stack's JSON log files
(``job_log_source=files``) or Cloud Logging (``cloud``), matched by ``labels.jobId``.

Both sources answer the same question, "lines of this job after this position", so the live
stream (services/api/job_logs.py) follows a job by asking again every poll interval.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from services.jobs.models import CamelModel
from services.settings import Settings
from services.telemetry.logging import LABELS_KEY

# Lines longer than this are cut: one runaway traceback must not fill the page.
MAX_MESSAGE_CHARS = 4000


class LogLine(CamelModel):
    at: datetime | None
    severity: str
    message: str
    stage: str | None
    source: str  # the process (local file name) or Cloud Run service that wrote it


class LogSource(Protocol):
    poll_seconds: float

    def read(self, job_id: str, position: Any) -> tuple[list[LogLine], Any]:
        """Lines of ``job_id`` after ``position`` (None: from the start), and the new position."""


def line_of(entry: dict[str, Any], source: str) -> LogLine:
    labels = entry.get(LABELS_KEY) or entry.get("labels") or {}
    message = (
        entry.get("message") or entry.get("textPayload") or entry.get("jsonPayload", {}).get("message", "")
    )
    at = entry.get("time") or entry.get("timestamp")
    return LogLine(
        at=datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else None,
        severity=str(entry.get("severity", "DEFAULT")),
        message=str(message)[:MAX_MESSAGE_CHARS],
        stage=labels.get("stage"),
        source=source,
    )


@dataclass
class FileLogSource:
    """Every ``*.log`` under ``directory`` (one per local process); the position is the byte
    offset reached in each file, so a follow-up read only parses what was appended."""

    directory: Path
    poll_seconds: float

    def read(self, job_id: str, position: dict[str, int] | None) -> tuple[list[LogLine], dict[str, int]]:
        offsets = dict(position or {})
        needle = f'"jobId": "{job_id}"'
        lines: list[LogLine] = []
        for path in sorted(self.directory.glob("*.log")):
            start = offsets.get(path.name, 0)
            with path.open("rb") as handle:
                handle.seek(start)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            offsets[path.name] = start + len(complete)
            lines += _matching(complete.decode("utf-8", "replace").splitlines(), needle, job_id, path.stem)
        lines.sort(key=lambda line: (line.at is None, line.at))
        return lines, offsets


def _matching(raw_lines: list[str], needle: str, job_id: str, source: str) -> Iterator[LogLine]:
    for raw in raw_lines:
        if needle not in raw:  # cheap test before parsing
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and (entry.get(LABELS_KEY) or {}).get("jobId") == job_id:
            yield line_of(entry, source)


@dataclass
class CloudLogSource:
    """Cloud Logging's entries.list filtered by ``labels.jobId``, oldest first; the position is
    the last timestamp and insert id seen (entries with equal timestamps are told apart by it)."""

    project: str
    poll_seconds: float
    client: Any  # google.cloud.logging.Client, built once per instance

    def read(self, job_id: str, position: tuple[str, str] | None) -> tuple[list[LogLine], Any]:
        query = f'labels.jobId="{job_id}"'
        if position is not None:
            query += f' AND timestamp>="{position[0]}"'
        lines: list[LogLine] = []
        last = position
        for entry in self.client.list_entries(
            resource_names=[f"projects/{self.project}"],
            filter_=query,
            order_by="timestamp asc",
            page_size=500,
        ):
            key = (entry.timestamp.isoformat(), entry.insert_id or "")
            if position is not None and key <= position:
                continue
            payload = entry.payload if isinstance(entry.payload, dict) else {"message": str(entry.payload)}
            service = (
                (entry.resource.labels or {}).get("service_name", "cloud") if entry.resource else "cloud"
            )
            lines.append(
                line_of(
                    {
                        **payload,
                        "severity": entry.severity or "DEFAULT",
                        "time": entry.timestamp.isoformat(),
                        "labels": entry.labels or {},
                    },
                    service,
                )
            )
            last = key
        return lines, last


def log_source(settings: Settings, logging_client: Any = None) -> LogSource | None:
    """The instance's source of job log lines, or None when this deployment reads none."""
    if settings.job_log_source == "files" and settings.job_log_dir:
        return FileLogSource(Path(settings.job_log_dir), settings.job_log_poll_seconds)
    if settings.job_log_source == "cloud":
        if logging_client is None:
            from google.cloud import logging as cloud_logging

            logging_client = cloud_logging.Client(project=settings.google_cloud_project)
        return CloudLogSource(settings.google_cloud_project, settings.cloud_log_poll_seconds, logging_client)
    return None
