"""Typed errors. Deep code raises these; entry points map them to a status code or an ack.

Each carries a stable machine ``code`` (what API clients switch on) and the HTTP status it maps to,
so no handler invents its own (status, body) pair.
"""

from __future__ import annotations

from typing import Any, ClassVar

from google.api_core.exceptions import DeadlineExceeded, RetryError, ServiceUnavailable


class JobtrailError(Exception):
    code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500
    # Seconds a client should wait before trying again (the Retry-After header), for outages.
    retry_after_seconds: ClassVar[int | None] = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"success": False, "ok": False, "error": self.code, "message": self.message, **self.details}


class InvalidInput(JobtrailError):
    code = "INVALID_INPUT"
    http_status = 400


class JobNotFound(JobtrailError):
    code = "JOB_NOT_FOUND"
    http_status = 404


class NotFound(JobtrailError):
    code = "NOT_FOUND"
    http_status = 404


class TransitionConflict(JobtrailError):
    """A state change whose precondition no longer holds (someone else moved the job first)."""

    code = "TRANSITION_CONFLICT"
    http_status = 409


class IllegalTransition(TransitionConflict):
    """A move the pipeline's state machine forbids: backwards, out of a terminal stage, unknown stage."""

    code = "ILLEGAL_TRANSITION"


class Unauthorized(JobtrailError):
    code = "UNAUTHORIZED"
    http_status = 401


class Forbidden(JobtrailError):
    code = "FORBIDDEN"
    http_status = 403


class PayloadTooLarge(JobtrailError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class InvalidSignature(Unauthorized):
    code = "INVALID_SIGNATURE"


class StoreUnavailable(JobtrailError):
    """Firestore could not be reached in time: nothing was read or written by this request."""

    code = "STORE_UNAVAILABLE"
    http_status = 503
    retry_after_seconds = 5


def store_unavailable(exc: BaseException) -> StoreUnavailable | None:
    """What the Firestore client raises when Firestore is down, partitioned away or too slow
    (UNAVAILABLE or an expired deadline, alone or as the last cause once retries ran out), as the
    typed error; None for anything else. The message names no host, path or query."""
    cause = exc.cause if isinstance(exc, RetryError) else exc
    if not isinstance(cause, ServiceUnavailable | DeadlineExceeded):
        return None
    return StoreUnavailable(
        "the job store (Firestore) is unavailable; nothing was changed, try again shortly"
    )
