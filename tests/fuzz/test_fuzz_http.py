"""Every HTTP entry point, fed bad input over real HTTP: no 5xx, and nothing written for a refusal.

For each request the test counts every collection the handlers can write (tests/fuzz/conftest.py)
before and after. A refused request (4xx) must leave them all as they were; an accepted one may
write only what that entry point writes (a webhook: one job and its idempotency key). Bodies are
broken copies of valid payloads, any JSON, any bytes, and nesting deeper than Python's recursion
limit; half the requests carry a valid signature or token, so validation past the auth check runs.
The API's OpenAPI routes are schemathesis's (tests of services/api); here, the Music Clips routes
the API mounts outside its OpenAPI document, and unknown paths.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from services.auth.credentials import mint_token
from services.intake import SIGNATURE_HEADER, sign
from services.music_clips.config import (
    CALLBACK_ATTEMPT_PARAM,
    CALLBACK_AUTH_PARAM,
    CALLBACK_JOB_PARAM,
    CALLBACK_PATH,
)
from services.music_clips.config import callback_token as music_callback_token
from services.worker.http import MAX_PUSH_BYTES
from tests.fuzz.conftest import Endpoints
from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.strategies import (
    HEADERS,
    JOB_MESSAGE,
    QUERY,
    VALID_CALLBACK,
    VALID_INCIDENT,
    VALID_RUN_ONCE,
    VALID_WEBHOOK,
    bodies,
    deep_nesting,
    dumps,
    mutations_of,
    push_body,
)

pytestmark = pytest.mark.emulator

EXAMPLES = 40  # per entry point in CI; `make fuzz` runs the long profile
METHODS = st.sampled_from(["POST"] * 6 + ["GET", "PUT", "PATCH", "DELETE"])
# Every functions-framework target answers every path; paths must not change what they do.
PATHS = st.sampled_from(["", "/", "/x", CALLBACK_PATH, "/metrics"]) | st.from_regex(
    r"\A/[a-zA-Z0-9_.-]{1,12}(/[a-zA-Z0-9_.-]{1,12}){0,2}\Z"
)
DEFAULT_MAX_BODY = 64 * 1024

_session = requests.Session()


def exchange(
    endpoints: Endpoints,
    name: str,
    *,
    method: str = "POST",
    path: str = "",
    body: bytes | Iterator[bytes] = b"",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[requests.Response, dict[str, int], dict[str, int]]:
    before = endpoints.counts()
    response = _session.request(
        method,
        endpoints.urls[name] + path,
        data=body,
        headers=headers or {},
        params=params or {},
        timeout=30,
    )
    return response, before, endpoints.counts()


def check(
    response: requests.Response,
    before: dict[str, int],
    after: dict[str, int],
    *,
    may_write: dict[str, int] | None = None,
) -> None:
    """No 5xx; a refusal writes nothing; an acceptance writes at most ``may_write`` per collection."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    grown = {name: after[name] - before[name] for name in before if after[name] != before[name]}
    if response.status_code >= 400:
        assert grown == {}, f"refused with {response.status_code} but wrote {grown}"
    else:
        allowed = may_write or {}
        assert all(0 <= n <= allowed.get(name, 0) for name, n in grown.items()), f"wrote {grown}"


# Push envelopes: broken ones, and well-formed ones whose message data is broken (any JSON, or
# nested past the recursion limit) while the attributes still name a job.
PUSH_BODIES = st.one_of(
    bodies(push_body(dumps(JOB_MESSAGE))),
    st.one_of(mutations_of(JOB_MESSAGE).map(dumps), deep_nesting()).map(lambda data: dumps(push_body(data))),
)


# ---- per entry point ----------------------------------------------------------------------------------
@fuzz_settings(EXAMPLES)
@given(METHODS, PATHS, bodies(VALID_WEBHOOK), HEADERS, QUERY, st.booleans())
def test_webhook_intake(endpoints, method, path, body, headers, query, signed):
    if signed:
        secret = endpoints.rt.settings.webhook_hmac_secret.get_secret_value()
        headers = {**headers, SIGNATURE_HEADER: sign(secret, body)}
    response, before, after = exchange(
        endpoints, "webhook_intake", method=method, path=path, body=body, headers=headers, params=query
    )
    check(response, before, after, may_write={"jobs": 1, "idempotency": 1})
    assert after["jobs"] - before["jobs"] == after["idempotency"] - before["idempotency"]


@fuzz_settings(EXAMPLES)
@given(
    METHODS,
    PATHS,
    PUSH_BODIES,
    HEADERS,
)
def test_pipeline_worker(endpoints, method, path, body, headers):
    response, before, after = exchange(
        endpoints, "pipeline_worker", method=method, path=path, body=body, headers=headers
    )
    # No job exists here, so no delivery may open an execution or touch anything.
    check(response, before, after)


@fuzz_settings(EXAMPLES)
@given(METHODS, PATHS, PUSH_BODIES, HEADERS)
def test_dlq_analyzer(endpoints, method, path, body, headers):
    response, before, after = exchange(
        endpoints, "dlq_analyzer", method=method, path=path, body=body, headers=headers
    )
    check(response, before, after)


FUZZ_JOB_ID = "job_1703616000000_abc123"


def callback_params(endpoints: Endpoints) -> dict[str, str]:
    """A genuine callback URL's query for one (absent) job attempt: the fuzzed bodies get past auth."""
    token = music_callback_token(endpoints.rt.settings, FUZZ_JOB_ID, 1)
    return {CALLBACK_JOB_PARAM: FUZZ_JOB_ID, CALLBACK_ATTEMPT_PARAM: "1", CALLBACK_AUTH_PARAM: token}


@fuzz_settings(EXAMPLES)
@given(METHODS, PATHS, bodies(VALID_CALLBACK), HEADERS, QUERY, st.booleans())
def test_suno_callback(endpoints, method, path, body, headers, query, with_token):
    params = {**query, **callback_params(endpoints)} if with_token else query
    response, before, after = exchange(
        endpoints, "suno_callback", method=method, path=path, body=body, headers=headers, params=params
    )
    check(response, before, after)


@fuzz_settings(EXAMPLES)
@given(st.sampled_from(["sweeper", "suno_poller"]), METHODS, PATHS, bodies({}), HEADERS, QUERY)
def test_scheduled_entry_points(endpoints, name, method, path, body, headers, query):
    response, before, after = exchange(
        endpoints, name, method=method, path=path, body=body, headers=headers, params=query
    )
    check(response, before, after)  # nothing is stale or due: nothing to write


@fuzz_settings(EXAMPLES)
@given(METHODS, PATHS, bodies(VALID_INCIDENT), HEADERS, st.sampled_from(["right", "wrong", "none"]))
def test_alert_relay(endpoints, method, path, body, headers, token):
    expected = endpoints.rt.settings.alert_relay_token.get_secret_value()
    params = {"auth_token": {"right": expected, "wrong": expected + "x"}[token]} if token != "none" else {}
    response, before, after = exchange(
        endpoints, "alert_relay", method=method, path=path, body=body, headers=headers, params=params
    )
    # A notification that parses is relayed: one claim per channel (one channel here).
    check(response, before, after, may_write={"alerts": 1})


def api_credentials(endpoints: Endpoints, which: str) -> dict[str, str]:
    settings = endpoints.rt.settings
    if which == "user":
        return {"Authorization": f"Bearer {mint_token(settings, 'fuzz-user', 'user')}"}
    if which == "admin":
        return {"Authorization": f"Bearer {mint_token(settings, 'fuzz-admin', 'admin')}"}
    if which == "garbage":
        return {"Authorization": "Bearer not.a.jwt"}
    return {}


CHANNEL = st.from_regex(r"\A[a-zA-Z0-9_.:@-]{1,40}\Z") | st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#%"),
    min_size=1,
    max_size=20,
)


@fuzz_settings(EXAMPLES)
@given(
    CHANNEL,
    bodies(VALID_RUN_ONCE),
    HEADERS,
    st.sampled_from(["user", "admin", "garbage", "none"]),
    st.none() | st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
)
def test_api_music_clips_run_once(endpoints, channel, body, headers, who, idempotency_key):
    headers = {**headers, **api_credentials(endpoints, who)}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response, before, after = exchange(
        endpoints, "api", path=f"/api/music-clips/channels/{channel}/runOnce", body=body, headers=headers
    )
    check(response, before, after, may_write={"jobs": 1, "idempotency": 1, "audit": 1})


@fuzz_settings(EXAMPLES)
@given(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    st.one_of(
        CHANNEL.map(lambda job_id: f"/api/music-clips/jobs/{job_id}"),
        st.just(CALLBACK_PATH),
        PATHS.map(lambda p: f"/api/nowhere{p}"),
    ),
    bodies(VALID_CALLBACK),
    HEADERS,
    st.sampled_from(["user", "admin", "garbage", "none"]),
    st.booleans(),
)
def test_api_other_routes_outside_the_openapi_document(endpoints, method, path, body, headers, who, token):
    params = callback_params(endpoints) if token else {}
    response, before, after = exchange(
        endpoints,
        "api",
        method=method,
        path=path,
        body=body,
        headers={**headers, **api_credentials(endpoints, who)},
        params=params,
    )
    check(response, before, after)


# ---- still working afterwards -------------------------------------------------------------------------
def test_after_hostile_input_a_valid_webhook_still_makes_one_job(endpoints):
    for body in (b"[" * 5000 + b"]" * 5000, b"\xff\xfe", b'{"accountId": 1}', dumps(VALID_WEBHOOK)[:-1]):
        response, before, after = exchange(endpoints, "webhook_intake", body=body)
        check(response, before, after)
    body = dumps(VALID_WEBHOOK)
    secret = endpoints.rt.settings.webhook_hmac_secret.get_secret_value()
    response, before, after = exchange(
        endpoints, "webhook_intake", body=body, headers={SIGNATURE_HEADER: sign(secret, body)}
    )
    assert response.status_code == 202, response.text
    assert after["jobs"] == before["jobs"] + 1 and after["idempotency"] == before["idempotency"] + 1


# ---- oversized bodies ----------------------------------------------------------------------------------
OVERSIZED = [
    ("webhook_intake", "", {}, DEFAULT_MAX_BODY),
    ("suno_callback", "", {"token": "from-settings"}, DEFAULT_MAX_BODY),
    ("alert_relay", "", {"auth_token": "from-settings"}, DEFAULT_MAX_BODY),
    ("api", "/api/music-clips/channels/c-1/runOnce", {}, DEFAULT_MAX_BODY),
    ("pipeline_worker", "", {}, MAX_PUSH_BYTES),
    ("dlq_analyzer", "", {}, MAX_PUSH_BYTES),
]


def _params(endpoints: Endpoints, params: dict[str, str]) -> dict[str, str]:
    if "token" in params:
        return callback_params(endpoints)
    settings = endpoints.rt.settings
    secrets = {"auth_token": settings.alert_relay_token}
    return {k: secrets[k].get_secret_value() for k in params}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name,path,params,limit", OVERSIZED, ids=[o[0] for o in OVERSIZED])
def test_a_body_over_the_limit_is_refused_413_and_writes_nothing(
    endpoints, name, path, params, limit, chunked
):
    body = b"{" + b" " * limit + b"}"

    def stream() -> Iterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    headers = {"Content-Type": "application/json"}
    if name == "api":
        headers.update(api_credentials(endpoints, "user"))
    response, before, after = exchange(
        endpoints,
        name,
        path=path,
        body=stream() if chunked else body,
        headers=headers,
        params=_params(endpoints, params),
    )
    assert response.status_code == 413, response.text[:200]
    check(response, before, after)


# ---- malformed HTTP ----------------------------------------------------------------------------------------
def raw_exchange(url: str, request: bytes, *, close_write: bool = True) -> bytes:
    """Send bytes as they are (what no HTTP client library would send); the raw answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# Broken chunked encoding is not here: the server in front of the handlers decodes it (gunicorn
# under functions-framework, Google's front end in the cloud); werkzeug's development server, which
# serves these tests, raises from its own reader, which says nothing about our code.
MALFORMED: list[tuple[str, bytes]] = [
    ("length not a number", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"),
    ("negative length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}"),
    ("body shorter than its length", b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"a": 1'),
    (
        "header without colon",
        b"POST / HTTP/1.1\r\nHost: x\r\nthis is not a header\r\nContent-Length: 2\r\n\r\n{}",
    ),
    (
        "non-latin-1 header",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Jobtrail-Signature: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
    ),
]


@pytest.mark.parametrize("request_bytes", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
@pytest.mark.parametrize(
    "name", ["webhook_intake", "pipeline_worker", "dlq_analyzer", "suno_callback", "alert_relay"]
)
def test_malformed_http_is_refused_without_5xx_or_writes(endpoints, name, request_bytes):
    before = endpoints.counts()
    answer = raw_exchange(endpoints.urls[name], request_bytes)
    status_line = answer.split(b"\r\n", 1)[0]
    # werkzeug may also close the connection without a word: that is not a 5xx either.
    if status_line:
        status = int(status_line.split()[1])
        assert status < 500, answer[:300]
    assert endpoints.counts() == before
