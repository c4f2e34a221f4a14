"""Every Pub/Sub payload jobtrail sends or receives, as versioned models, and the push envelope.

A message carries only ids (the job is the source of truth in Firestore), so retries and replays
always act on the job's current state. ``v`` lets senders add fields without breaking receivers:
unknown fields are ignored, and a receiver rejects only versions newer than it understands.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.errors import InvalidInput

MESSAGE_VERSION = 1


class JobMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    v: int = MESSAGE_VERSION
    job_id: str = Field(min_length=1, max_length=128)
    pipeline: str
    trace_id: str
    # Why it was sent: a new job, an explicit retry, a DLQ replay.
    reason: Literal["start", "retry", "replay"] = "start"

    @field_validator("v")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > MESSAGE_VERSION:
            raise ValueError(f"message version {v} is newer than this worker understands ({MESSAGE_VERSION})")
        return v

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    def attributes(self) -> dict[str, str]:
        """Routing and log labels readable without decoding the body."""
        return {"v": str(self.v), "jobId": self.job_id, "pipeline": self.pipeline, "traceId": self.trace_id}


class PushedMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = Field(alias="messageId", min_length=1)
    publish_time: datetime | None = Field(None, alias="publishTime")


class PushEnvelope(BaseModel):
    """The body Pub/Sub POSTs to a push endpoint."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message: PushedMessage
    subscription: str = Field(min_length=1)
    delivery_attempt: int | None = Field(None, alias="deliveryAttempt", ge=1)

    @property
    def subscription_name(self) -> str:
        """The short name (after the project path), as in infra/topology.yaml plus prefix."""
        return self.subscription.rsplit("/", 1)[-1]

    def payload(self) -> dict[str, Any]:
        try:
            raw = base64.b64decode(self.message.data, validate=True)
            value = json.loads(raw) if raw else {}
        # RecursionError: JSON nested deeper than the parser's stack, which only a hostile or broken
        # sender produces; it is bad input like any other, not a crash.
        except (binascii.Error, ValueError, RecursionError) as exc:
            raise InvalidInput(f"message {self.message.message_id} data is not base64 JSON") from exc
        if not isinstance(value, dict):
            raise InvalidInput(f"message {self.message.message_id} data is not a JSON object")
        return value

    def job_message(self) -> JobMessage:
        try:
            return JobMessage.model_validate(self.payload())
        except ValidationError as exc:
            raise InvalidInput(
                f"message {self.message.message_id} is not a job message",
                problems=exc.errors(include_url=False, include_context=False, include_input=False),
            ) from exc


def decode_envelope(body: bytes | None) -> PushEnvelope:
    if not body:
        raise InvalidInput("empty push body")
    try:
        return PushEnvelope.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidInput(
            "not a Pub/Sub push envelope",
            problems=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from exc
