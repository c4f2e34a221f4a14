"""How reports reach jobtrail: its ingest API over HTTP, or the ingest-reports Pub/Sub topic.

A transport sends one item and says what became of it; it never retries and never raises for a
network problem. Retrying, ordering and buffering are the tracker's.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import requests

REPORTER_KEY_HEADER = "X-Reporter-Key"
INGEST_PATHS = {"create": "/api/ingest/jobs", "report": "/api/ingest/reports"}
# jobtrail's ingest limit; a bigger item could never be accepted, so it is not sent.
MAX_BODY_BYTES = 64 * 1024


class Outcome(Enum):
    DELIVERED = "delivered"  # jobtrail has it (applied, or a duplicate)
    REFUSED = "refused"  # jobtrail will never take it (bad input, out of scope, stale): drop it
    RETRY = "retry"  # jobtrail could not be reached or asked for later: send it again


@dataclass(frozen=True)
class Sent:
    outcome: Outcome
    detail: str = ""
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Item:
    """One create or report, with the trace context it was made in."""

    kind: str  # "create" or "report"
    body: dict[str, Any]
    trace_headers: dict[str, str]


class Transport(Protocol):
    def send(self, item: Item) -> Sent: ...


class ReporterKey:
    """The ``X-Reporter-Key`` a jobtrail operator gave this service."""

    def __init__(self, key: str) -> None:
        self._key = key

    def headers(self) -> dict[str, str]:
        return {REPORTER_KEY_HEADER: self._key}

    def __repr__(self) -> str:  # never print the key
        return "ReporterKey(***)"


class GoogleIdToken:
    """A Google-signed ID token of this service's own service account (the metadata server on
    Cloud Run), minted for ``audience`` (jobtrail's ingest URL) and refreshed before it expires."""

    REFRESH_BEFORE_SECONDS = 300

    def __init__(self, audience: str, fetch: Callable[[str], str] | None = None) -> None:
        self.audience = audience
        self._fetch = fetch or _fetch_google_id_token
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or time.time() > self._expires - self.REFRESH_BEFORE_SECONDS:
                self._token = self._fetch(self.audience)
                self._expires = _expiry_of(self._token)
            return {"Authorization": f"Bearer {self._token}"}


def _fetch_google_id_token(audience: str) -> str:
    # google-auth comes with the Google Cloud libraries; only services that use ID tokens need it.
    import google.auth.transport.requests
    import google.oauth2.id_token

    token: str = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    return token


def _expiry_of(token: str) -> float:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return time.time() + 600


class Credentials(Protocol):
    def headers(self) -> dict[str, str]: ...


class HttpTransport:
    """POST /api/ingest/jobs and /api/ingest/reports on jobtrail's API."""

    def __init__(self, base_url: str, credentials: Credentials, *, timeout_seconds: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.timeout_seconds = timeout_seconds
        self._session = requests.Session()

    def send(self, item: Item) -> Sent:
        data = json.dumps(item.body, separators=(",", ":")).encode()
        if len(data) > MAX_BODY_BYTES:
            return Sent(
                Outcome.REFUSED, f"{item.kind} is {len(data)} bytes, over jobtrail's {MAX_BODY_BYTES}"
            )
        try:
            headers = {"Content-Type": "application/json", **item.trace_headers, **self.credentials.headers()}
            response = self._session.post(
                self.base_url + INGEST_PATHS[item.kind],
                data=data,
                headers=headers,
                timeout=self.timeout_seconds,
            )
        except Exception as exc:  # the network, or the metadata server for an ID token
            return Sent(Outcome.RETRY, type(exc).__name__)
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        status = response.status_code
        if status < 300:
            return Sent(Outcome.DELIVERED, str(status), body)
        detail = f"{status} {body.get('error', '')}: {body.get('message', response.reason)}"
        if status in (408, 429) or status >= 500:
            return Sent(Outcome.RETRY, detail)
        return Sent(Outcome.REFUSED, detail, body)

    def close(self) -> None:
        self._session.close()


class PubSubTransport:
    """Publish to the ingest-reports topic (``projects/<p>/topics/<prefix>ingest-reports``).

    ``service`` is this service's name in the pipeline declarations; the topic's publisher role is
    its credential. Creates answer nothing back: reports name their job by idempotency key.
    """

    def __init__(
        self, topic_path: str, service: str, *, publisher: Any = None, timeout_seconds: float = 10.0
    ) -> None:
        if publisher is None:  # google-cloud-pubsub: only services that publish need it
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            publisher = pubsub_v1.PublisherClient()
        self.topic_path = topic_path
        self.service = service
        self.publisher = publisher
        self.timeout_seconds = timeout_seconds

    def send(self, item: Item) -> Sent:
        data = json.dumps(
            {"v": 1, "service": self.service, item.kind: item.body}, separators=(",", ":")
        ).encode()
        if len(data) > MAX_BODY_BYTES:
            return Sent(
                Outcome.REFUSED, f"{item.kind} is {len(data)} bytes, over jobtrail's {MAX_BODY_BYTES}"
            )
        try:
            message_id = self.publisher.publish(self.topic_path, data, **item.trace_headers).result(
                timeout=self.timeout_seconds
            )
        except Exception as exc:
            return Sent(Outcome.RETRY, type(exc).__name__)
        return Sent(Outcome.DELIVERED, str(message_id))

    def close(self) -> None:
        self.publisher.stop()
