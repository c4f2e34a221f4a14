"""redact(): known secret values and credential-shaped text, in strings and nested payloads."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from services.settings import Settings
from services.telemetry.redaction import _PATTERNS, REDACTED, Redactor, register_secrets, secret_values


def test_every_secretstr_in_settings_is_collected():
    settings = Settings(
        suno_api_key="suno-k-1", telegram_bot_token="tg-2", slack_webhook_url="https://hooks/x"
    )
    values = secret_values(settings)
    assert {"suno-k-1", "tg-2", "https://hooks/x", settings.webhook_hmac_secret.get_secret_value()} <= values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123", "Authorization: Bearer [REDACTED]"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic [REDACTED]"),
        ("X-Api-Key: k-123 then more", "X-Api-Key: [REDACTED] then more"),
        ("authorization=raw-token next", "authorization=[REDACTED] next"),
        ("Cookie: sid=1; other=2", "Cookie: [REDACTED]"),
        (
            "GET /cb?token=t1&x=2&apiKey=a1&key=k1",
            "GET /cb?token=[REDACTED]&x=2&apiKey=[REDACTED]&key=[REDACTED]",
        ),
        ("https://h/p?access_token=t1#frag", "https://h/p?access_token=[REDACTED]#frag"),
        (
            '{"api_key": "a", "password": "p\\"q", "ok": "yes"}',
            '{"api_key": "[REDACTED]", "password": "[REDACTED]", "ok": "yes"}',
        ),
        (
            "{'client_secret': 's', 'signature': 'x'}",
            "{'client_secret': '[REDACTED]', 'signature': '[REDACTED]'}",
        ),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-x here", "jwt [REDACTED] here"),
    ],
)
def test_credential_shapes_are_redacted(text, expected):
    assert Redactor().redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a basic idea",
        "idempotency_key=abc",
        "job j-1 moved to STAGE_20 after 1200 ms",
        "traceId=acc-scn-src",
        "error code=INVALID_INPUT",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert Redactor().redact_text(text) == text


def test_a_known_secret_is_redacted_raw_url_encoded_and_json_escaped():
    secret = 'p@ss w/"q"'
    redactor = Redactor([secret])
    assert redactor.redact_text(f"x {secret} y") == f"x {REDACTED} y"
    assert redactor.redact_text("url?q=p%40ss%20w%2F%22q%22") == f"url?q={REDACTED}"
    assert redactor.redact_text('{"v": "p@ss w/\\"q\\""}') == f'{{"v": "{REDACTED}"}}'


def test_nested_payloads_are_redacted_by_key_and_by_value():
    redactor = Redactor(["planted-value-77"])
    payload = {
        "headers": {"Authorization": "anything", "X-Goog-Api-Key": "k", "Accept": "json"},
        "items": [{"note": "has planted-value-77 inside"}, ("Bearer tok",)],
        "sunoApiKey": SecretStr("s"),
        "emptyToken": "",
        "count": 3,
    }
    assert redactor.redact(payload) == {
        "headers": {"Authorization": REDACTED, "X-Goog-Api-Key": REDACTED, "Accept": "json"},
        "items": [{"note": f"has {REDACTED} inside"}, [f"Bearer {REDACTED}"]],
        "sunoApiKey": REDACTED,
        "emptyToken": "",
        "count": 3,
    }


def test_short_values_are_not_treated_as_secrets():
    # A 3-character "secret" would blank every word containing it; such values are not secrets.
    assert Redactor(["abc"]).redact_text("abcdef") == "abcdef"


def test_register_secrets_feeds_the_process_redactor():
    from services.telemetry import redact

    register_secrets(Settings(suno_api_key="registered-secret-91"))
    assert redact("key is registered-secret-91") == f"key is {REDACTED}"


# Text made of the pieces the patterns look for, so the fuzzer reaches every pattern often.
_PIECES = st.sampled_from(
    [
        "Bearer ", "basic ", "Authorization", "x-api-key", "X-Auth-Token", "cookie", "Set-Cookie", ": ",
        "=", "&", "?", '"', "'", "api_key", "apiKey", "sig", "key", "auth", "password", "passwd",
        "client_secret", "signature", "credential", "eyJhbGciOiJIUzI1NiJ9", ".", "abc", "dXNlcjpwYXNz",
        " ", "\n", ";", "#", "token", "job_123", "accepted",
    ]
)  # fmt: skip


@hypothesis_settings(max_examples=400)
@given(st.lists(_PIECES | st.text(max_size=4), max_size=24).map("".join))
@example("sig=abc&auth=x")  # the short names only the "=" lets through
def test_the_quick_skip_changes_no_result(text: str):
    """Text the one-search guard lets through unchanged is text no pattern would have changed."""
    redactor = Redactor()
    every_pattern = text
    for pattern, replacement in _PATTERNS:
        every_pattern = pattern.sub(replacement, every_pattern)
    assert redactor.redact_text(text) == every_pattern
