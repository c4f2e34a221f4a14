"""Hypothesis strategies for hostile input: JSON of any shape, valid payloads with parts broken,
raw bytes, nesting deep enough to break a recursive parser, and HTTP headers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=16), inner, max_size=4),
    max_leaves=20,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _mutate(valid: dict[str, Any], dropped: set[str], changed: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in valid.items() if k not in dropped}
    out.update(changed)
    return out


def mutations_of(valid: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with some keys dropped, some values replaced by any JSON, some keys added."""
    keys = sorted(valid)
    if not keys:
        return st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4)
    return st.builds(
        _mutate,
        st.just(dict(valid)),
        st.sets(st.sampled_from(keys), max_size=len(keys)),
        st.dictionaries(st.sampled_from(keys) | st.text(max_size=12), JSON_VALUES, max_size=4),
    )


def deep_nesting() -> st.SearchStrategy[bytes]:
    """Arrays or objects nested deeper than Python's recursion limit (json.loads raises RecursionError)."""
    return st.builds(
        lambda depth, obj: (b'{"a":' * depth + b"1" + b"}" * depth) if obj else (b"[" * depth + b"]" * depth),
        st.integers(min_value=500, max_value=20_000),
        st.booleans(),
    )


def bodies(valid: Mapping[str, Any]) -> st.SearchStrategy[bytes]:
    """Request bodies around ``valid``: broken copies of it, any JSON, any text, any bytes."""
    return st.one_of(
        mutations_of(valid).map(dumps),
        JSON_VALUES.map(dumps),
        st.binary(max_size=300),
        st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")),
        deep_nesting(),
        st.just(dumps(valid)),
    )


# Header names and values that HTTP can carry (latin-1, no line breaks); requests refuses others.
HEADER_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=60
).map(str.strip)
HEADER_NAME = st.sampled_from(
    [
        "Content-Type",
        "Authorization",
        "X-Jobtrail-Signature",
        "X-API-Key",
        "Idempotency-Key",
        "x-user-id",
        "X-Cloud-Trace-Context",
        "traceparent",
        "Accept",
        "Content-Encoding",
        "Transfer-Encoding",
        "X-Forwarded-For",
    ]
) | st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z")
HEADERS = st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=5).map(
    # Transfer-Encoding and Content-Encoding values that lie about the body hang or break the
    # client, not the server; those are covered by the raw-socket cases.
    lambda h: {k: v for k, v in h.items() if k not in ("Transfer-Encoding", "Content-Encoding")}
)
QUERY = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12), st.text(max_size=30), max_size=3
)


# ---- valid samples the strategies break -------------------------------------------------------------
JOB_MESSAGE = {"v": 1, "job_id": "job_1_ab", "pipeline": "video", "trace_id": "a-b-c", "reason": "start"}
VALID_WEBHOOK = {
    "accountId": "acc-1",
    "scenarioId": "reels",
    "sourceId": "src-1",
    "userId": "user-1",
    "deliveryId": "d-1",
    "videoUrl": "https://videos.example/a.mp4",
    "caption": "hello",
}
VALID_CALLBACK = {
    "code": 200,
    "msg": "All generated successfully.",
    "data": {
        "callbackType": "complete",
        "task_id": "t-1",
        "data": [{"audio_url": "https://a.example/1.mp3"}],
    },
}
VALID_RUN_ONCE = {"userId": "u-1", "prompt": "lofi", "style": "chill", "title": "t", "instrumental": True}
VALID_INCIDENT = {
    "version": "1.2",
    "incident": {
        "incident_id": "i-1",
        "scoping_project_id": "p",
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/i-1",
        "state": "open",
        "started_at": 1767614400,
        "ended_at": None,
        "summary": "DLQ not empty",
        "policy_name": "dlq",
        "condition_name": "dlq > 0",
        "metric": {"type": "custom.googleapis.com/jobtrail/worker_dlq_total", "labels": {"jobId": "job_1"}},
        "resource": {"type": "global", "labels": {"project_id": "p"}},
        "observed_value": "1",
        "threshold_value": "0",
        "documentation": {"content": "See https://runbooks.example/dlq.md", "mime_type": "text/markdown"},
    },
}


def push_body(data: bytes, **message: Any) -> dict[str, Any]:
    """A Pub/Sub push envelope carrying ``data`` (extra ``message`` fields override the defaults)."""
    import base64

    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": {"jobId": "job_1_ab"},
            "messageId": "m-1",
            "publishTime": "2026-01-05T12:00:00Z",
            **message,
        },
        "subscription": "projects/p/subscriptions/video-worker",
        "deliveryAttempt": 1,
    }
