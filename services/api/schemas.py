"""What the API receives, and its error body. What it answers to reads is in services/reads/views.py;
the OpenAPI document (services/api/openapi.py) is generated from both, so the spec and the service
cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from services.control import DeadLetterFilter
from services.jobs.models import CamelModel
from services.reads.views import Envelope, JobView

# JobView is re-exported for the live stream (services/api/stream.py).
__all__ = ["JobView"]

ID = Field(min_length=1, max_length=128)


class ErrorBody(BaseModel):
    """Every error: a stable machine code, a message for people, sometimes details."""

    model_config = ConfigDict(extra="allow")

    success: Literal[False] = False
    ok: Literal[False] = False
    error: str = Field(description="Stable code: JOB_NOT_FOUND, UNAUTHORIZED, INVALID_INPUT...")
    message: str


class ReplayExecution(CamelModel):
    model_config = ConfigDict(extra="forbid")
    execution_id: str = ID


class ReplayJob(CamelModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str = ID


class ReplayBulk(CamelModel):
    """Every dead-lettered job matching ``filter`` (admins only), up to ``limit`` per call."""

    model_config = ConfigDict(extra="forbid")
    filter: DeadLetterFilter
    limit: int = Field(1000, ge=1, le=5000)
    page_size: int = Field(100, ge=1, le=500)


class ReplayRequest(RootModel[ReplayExecution | ReplayJob | ReplayBulk]):
    """One dead letter (by executionId or jobId), or all matching a filter."""


class ReplayFailure(CamelModel):
    job_id: str
    error: str


class ReplayResult(Envelope):
    mode: Literal["single", "bulk"]
    matched: int
    replayed: int
    skipped: int = Field(description="Replayed by someone else meanwhile (each job is replayed once).")
    failed: int
    remaining: int = Field(description="Still dead-lettered afterwards (call again to continue).")
    pages: int
    failures: list[ReplayFailure]
    job_id: str | None = Field(None, description="The replayed job (single mode).")


class OpenApiDocument(RootModel[dict[str, Any]]):
    """This document."""


class Health(BaseModel):
    """What Cloud Run's probes get from a serving instance."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]
    entryPoint: str
    revision: str | None = None
