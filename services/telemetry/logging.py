"""One JSON logger for every function: one line per record on stdout, in the shape Cloud Logging
parses (https://cloud.google.com/logging/docs/structured-logging).

google-cloud-logging's StructuredLogHandler does the Google part: severity, the trace and span of
the active OpenTelemetry span as ``projects/P/traces/T``, trace_sampled, sourceLocation, and the
httpRequest of the current Flask request. On top of it this adds what it lacks: ``time``, the
labels bound for the current request or job (``labels.traceId="acc-scn-src"`` finds every line of
a job), ``extra={"fields": {...}}`` as top-level fields, and redaction of every secret.

    log = get_logger(__name__)
    with bind_labels(traceId=job.trace_id, jobId=job.job_id, pipeline=job.pipeline, stage=job.stage):
        log.info("stage done", extra={"fields": {"durationMs": 1200}})
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from google.cloud.logging_v2.handlers import StructuredLogHandler

from services.settings import Settings
from services.telemetry.redaction import Redactor, default_redactor, redact, register_secrets

__all__ = [
    "JsonLogHandler",
    "bind_job",
    "bind_labels",
    "configure_logging",
    "current_labels",
    "get_logger",
    "redact",
]

LABELS_KEY = "logging.googleapis.com/labels"
_RESERVED = frozenset(
    {
        "severity",
        "message",
        "time",
        "httpRequest",
        LABELS_KEY,
        "logging.googleapis.com/trace",
        "logging.googleapis.com/spanId",
        "logging.googleapis.com/trace_sampled",
        "logging.googleapis.com/sourceLocation",
    }
)

# Per request / per thread: a new thread starts with no labels, so nothing leaks between jobs.
_labels: ContextVar[Mapping[str, str]] = ContextVar("jobtrail_log_labels", default={})  # noqa: B039


def current_labels() -> dict[str, str]:
    return dict(_labels.get())


@contextmanager
def bind_labels(**labels: object) -> Iterator[None]:
    """Add ``labels`` to every line logged inside this block (by this thread or task); None skips."""
    token = _labels.set({**_labels.get(), **{k: str(v) for k, v in labels.items() if v is not None}})
    try:
        yield
    finally:
        _labels.reset(token)


class _JobLike(Protocol):
    @property
    def trace_id(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def pipeline(self) -> str: ...
    @property
    def stage(self) -> str: ...


def bind_job(job: _JobLike, **more: object) -> AbstractContextManager[None]:
    """``bind_labels`` with a job's traceId, jobId, pipeline and stage."""
    return bind_labels(traceId=job.trace_id, jobId=job.job_id, pipeline=job.pipeline, stage=job.stage, **more)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


class JsonLogHandler(StructuredLogHandler):
    """StructuredLogHandler plus time, bound labels, ``fields`` and redaction.

    Writes to the stdout of the moment it writes (not of the moment it was built) unless given a
    stream, so a swapped sys.stdout (pytest's capture, a test harness) still sees the lines.
    """

    def __init__(
        self, *, project_id: str, stream: IO[str] | None = None, redactor: Redactor | None = None
    ) -> None:
        super().__init__(project_id=project_id, stream=stream)
        self._fixed_stream = stream
        self._redactor = redactor or default_redactor()

    @property
    def stream(self) -> IO[str]:
        return self._fixed_stream if self._fixed_stream is not None else sys.stdout

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self._fixed_stream = value

    def emit_instrumentation_info(self) -> None:
        # The library logs a one-off line about itself, without a message or our labels; skip it.
        import google.cloud.logging_v2

        google.cloud.logging_v2._instrumentation_emitted = True

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = json.loads(super().format(record))
        entry["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat().replace("+00:00", "Z")
        entry[LABELS_KEY] = {**entry.get(LABELS_KEY, {}), **_labels.get(), **_explicit_labels(record)}
        for empty in ("logging.googleapis.com/trace", "logging.googleapis.com/spanId", "httpRequest"):
            if not entry.get(empty):
                entry.pop(empty, None)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                if key not in _RESERVED:
                    entry[str(key)] = value
        return json.dumps(self._redactor.redact(entry), ensure_ascii=False, default=str)


def _explicit_labels(record: logging.LogRecord) -> dict[str, str]:
    labels = getattr(record, "labels", None)
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def configure_logging(settings: Settings, *, stream: IO[str] | None = None) -> JsonLogHandler:
    """Route every logger through one JsonLogHandler at ``settings.log_level``; replaces a
    previous one, so calling it again (a second app in the same process) does not double lines."""
    register_secrets(settings)
    handler = JsonLogHandler(project_id=settings.google_cloud_project, stream=stream)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, JsonLogHandler):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    return handler
