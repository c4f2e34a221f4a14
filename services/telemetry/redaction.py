"""Secrets never reach a log line, an error message or a stored payload snapshot.

Two nets: the exact values of every secret in Settings (whatever they are embedded in), and the
shapes secrets usually travel in (Authorization headers, ``token=`` query parameters, JSON fields
named like a credential, JWTs) for the ones we were never told about, such as a caller's token.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

from services.settings import Settings

REDACTED = "[REDACTED]"

# A secret shorter than this is more likely to hit ordinary words than to be a real credential.
_MIN_SECRET_LENGTH = 4

# Field names (lower-case, separators removed) that carry a credential whatever their value.
_SENSITIVE_NAME_PARTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "authorization",
    "signature",
    "cookie",
    "credential",
    "privatekey",
)
_NAME_SEPARATORS = re.compile(r"[^a-z0-9]")

_NAME = r"[\w.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|authorization|signature|cookie|credential)[\w.-]*"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Authorization: Bearer abc", "bearer=abc" in a repr; a Basic credential (long enough not to
    # be the English word followed by another).
    (re.compile(r"(?i)\b(bearer)(\s+|=)[A-Za-z0-9\-._~+/]+=*"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(basic)(\s+|=)[A-Za-z0-9+/]{8,}=*"), rf"\1\2{REDACTED}"),
    # Header-like "X-Api-Key: abc", "authorization=abc": the one value that follows.
    (
        re.compile(
            r"(?i)\b(authorization|proxy-authorization|x-api-key|x-goog-api-key|api-key|x-auth-token)"
            r"(\s*[:=]\s*+)(?!\[REDACTED\]|bearer\b|basic\b)([^\s\"',;&]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
    # "Cookie: a=b; c=d": every cookie, up to the end of the line or a quote.
    (re.compile(r"(?i)\b(cookie|set-cookie)(\s*:\s*+)(?!\[REDACTED\])[^\r\n\"']+"), rf"\1\2{REDACTED}"),
    # Quoted field, JSON or Python repr: "api_key": "abc", 'password': 'abc'.
    (re.compile(rf"(?i)([\"'])({_NAME})\1(\s*:\s*)([\"'])(?:\\.|(?!\4).)*\4"), rf"\1\2\1\3\4{REDACTED}\4"),
    # Query parameters and form fields: ?token=abc&key=abc&apiKey=abc&sig=abc.
    (
        re.compile(rf"(?i)(?<![\w.-])({_NAME}|key|sig|auth)=(?!\[REDACTED\])([^&#\s\"',;]+)"),
        rf"\1={REDACTED}",
    ),
    # A JWT wherever it appears, headers or not.
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), REDACTED),
)

# Text none of the patterns can match (most of a log line: messages, ids, times) skips them all
# with one search: every pattern above needs one of these words, an "=" or a JWT's "eyJ".
_MAY_HOLD_CREDENTIAL = re.compile(
    r"(?i)bearer|basic|authoriz|api[_-]?key|auth-token|cookie|token|secret|passw|signature|credential|=|eyJ"
)


@functools.lru_cache(maxsize=4096)  # a log line's keys are mostly the same few dozen names
def is_sensitive_name(name: str) -> bool:
    normalized = _NAME_SEPARATORS.sub("", name.lower())
    return any(part in normalized for part in _SENSITIVE_NAME_PARTS)


def secret_values(settings: Settings) -> set[str]:
    """Every SecretStr value Settings holds (API keys, HMAC secrets, bot tokens, webhook URLs)."""
    values: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.add(value.get_secret_value())
    return values


class Redactor:
    """Replaces known secret values and credential-shaped text by ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # A secret can also appear URL-encoded (in a query string) or JSON-escaped (in a body).
        variants = set()
        for secret in secrets:
            if len(secret) < _MIN_SECRET_LENGTH:
                continue
            variants.update({secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]})
        with self._lock:
            # Longest first, so a secret that contains another one is replaced whole.
            self._secrets = tuple(sorted(set(self._secrets) | variants, key=len, reverse=True))

    def redact_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if _MAY_HOLD_CREDENTIAL.search(text) is None:
            return text
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` (str, mapping, list, tuple, scalar) with every secret replaced."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, SecretStr):
            return REDACTED
        if isinstance(value, Mapping):
            return {
                key: REDACTED
                if isinstance(key, str) and is_sensitive_name(key) and value[key] not in (None, "")
                else self.redact(value[key])
                for key in value
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(item) for item in value]
        return value


# The process's redactor: logging uses it, and so does anyone snapshotting a payload.
_default = Redactor()


def register_secrets(settings: Settings) -> None:
    """Teach the process-wide redactor every secret these settings hold."""
    _default.add_secrets(secret_values(settings))


def redact(value: Any) -> Any:
    """``value`` with every registered secret and credential-shaped text replaced by ``[REDACTED]``."""
    return _default.redact(value)


def default_redactor() -> Redactor:
    return _default
