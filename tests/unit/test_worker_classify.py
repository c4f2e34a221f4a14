"""How the worker names a failed attempt: retryable or not, and the code its execution records."""

from __future__ import annotations

import pytest
from google.api_core.exceptions import Aborted, ServiceUnavailable

from services.external.resilience import ExternalError, PermanentExternalError
from services.pipelines.steps import NonRetryableError
from services.worker.engine import classify


def gave_up_on_a_transaction() -> ValueError:
    """What google-cloud-firestore raises after its last retry of a contended transaction."""
    try:
        try:
            raise Aborted("Transaction lock timeout.")
        except Aborted as aborted:
            raise ValueError("Failed to commit transaction in 5 attempts.") from aborted
    except ValueError as exc:
        return exc


@pytest.mark.parametrize(
    "exc,expected",
    [
        (NonRetryableError("MISSING_VIDEO_URL", "no url"), ("MISSING_VIDEO_URL", False)),
        (
            PermanentExternalError("INSTAGRAM_REJECTED", "400", service="instagram"),
            ("INSTAGRAM_REJECTED", False),
        ),
        (ExternalError("SUNO_UNAVAILABLE", "503", service="suno"), ("SUNO_UNAVAILABLE", True)),
        (ServiceUnavailable("firestore down"), ("DEPENDENCY_UNAVAILABLE", True)),
        (TimeoutError(), ("HANDLER_TIMEOUT", True)),
        (gave_up_on_a_transaction(), ("DEPENDENCY_UNAVAILABLE", True)),
        (ValueError("a bug"), ("UNEXPECTED_ERROR", True)),
    ],
)
def test_classify(exc, expected):
    assert classify(exc) == expected
