"""Delivery of one alert message to one chat service, with retries.

Each attempt either succeeds or raises ``DeliveryError``; tenacity retries the retryable ones with
exponential backoff and jitter, except that a service which says how long to wait (Telegram's
``parameters.retry_after``, Slack's ``Retry-After`` header) is waited for exactly that long.

Credentials live in URLs here (Telegram's ``/bot<token>/``, Slack's webhook path), so nothing that
might carry a URL leaves this module: error messages name the service and the status only,
exceptions are raised ``from None`` so no traceback drags the ``requests`` error (and its URL) along,
HTTP tracing is suppressed for these calls, and urllib3's debug lines are redacted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import requests
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from services.alerting.message import AlertMessage
from services.settings import Settings

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
_SLACK_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
Sleep = Callable[[float], None]


class DeliveryError(Exception):
    """One failed delivery attempt. ``message`` is safe to log: no URL, no credential."""

    def __init__(
        self,
        channel: str,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        # Seconds the service asked us to wait before the next attempt.
        self.retry_after = retry_after


class Channel(Protocol):
    @property
    def name(self) -> str:
        """Short and stable: it goes into dedup keys, logs and responses."""

    def send(self, message: AlertMessage) -> None:
        """Deliver ``message`` or raise ``DeliveryError`` once retries are exhausted."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 16.0
    retry_after_max_seconds: float = 30.0
    budget_seconds: float = 45.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.alert_max_attempts,
            backoff_initial_seconds=settings.alert_backoff_initial_seconds,
            backoff_max_seconds=settings.alert_backoff_max_seconds,
            retry_after_max_seconds=settings.alert_retry_after_max_seconds,
            budget_seconds=settings.alert_delivery_budget_seconds,
        )


class _RedactSecrets(logging.Filter):
    """Rewrites records that contain a registered secret (urllib3 logs request paths at DEBUG)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        with self._lock:
            self._secrets.add(secret)
            if self not in _URLLIB3_LOG.filters:
                _URLLIB3_LOG.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        secrets = [s for s in self._secrets if s and s in text]
        if secrets:
            for secret in secrets:
                text = text.replace(secret, REDACTED)
            record.msg, record.args = text, None
        return True


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
_redactor = _RedactSecrets()


def _last_error(state: RetryCallState) -> DeliveryError | None:
    exc = state.outcome.exception() if state.outcome else None
    return exc if isinstance(exc, DeliveryError) else None


class _StopWhenAskedToWaitTooLong(stop_base):
    """Give up when the service asks for a pause longer than we are willing to hold a request."""

    def __init__(self, limit_seconds: float) -> None:
        self.limit_seconds = limit_seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _last_error(retry_state)
        return bool(
            error is not None and error.retry_after is not None and error.retry_after > self.limit_seconds
        )


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retryable


class HttpChannel:
    """What both chat services share: a session, a timeout, the retry loop, safe errors."""

    name: ClassVar[str]

    def __init__(
        self,
        *,
        timeout_seconds: float,
        policy: RetryPolicy,
        session: requests.Session | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._timeout = timeout_seconds
        self._policy = policy
        self._session = session or requests.Session()
        self._sleep = sleep
        self._backoff = wait_exponential_jitter(
            initial=policy.backoff_initial_seconds, max=policy.backoff_max_seconds
        )

    def _wait(self, state: RetryCallState) -> float:
        error = _last_error(state)
        if error is not None and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        error = _last_error(state)
        log.warning(
            "alert delivery to %s failed (%s), attempt %d; retrying in %.1fs",
            self.name,
            error.code if error else "unknown",
            state.attempt_number,
            state.upcoming_sleep,
            extra={"channel": self.name, "error_code": error.code if error else None},
        )

    def send(self, message: AlertMessage) -> None:
        retrying = Retrying(
            retry=retry_if_exception(_is_retryable),
            stop=stop_any(
                stop_after_attempt(self._policy.max_attempts),
                stop_before_delay(self._policy.budget_seconds),
                _StopWhenAskedToWaitTooLong(self._policy.retry_after_max_seconds),
            ),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        retrying(self._attempt, message)

    def _attempt(self, message: AlertMessage) -> None:
        raise NotImplementedError

    def _post(self, url: str, payload: dict[str, Any]) -> requests.Response:
        # The URL carries the credential: no HTTP span may record it.
        with suppress_http_instrumentation():
            try:
                return self._session.post(url, json=payload, timeout=self._timeout)
            except requests.Timeout:
                raise DeliveryError(
                    self.name, "TIMEOUT", f"{self.name}: no answer within {self._timeout}s"
                ) from None
            except requests.RequestException as exc:
                raise DeliveryError(
                    self.name, "CONNECTION_FAILED", f"{self.name}: request failed ({type(exc).__name__})"
                ) from None

    def _http_error(
        self, response: requests.Response, detail: str, retry_after: float | None
    ) -> DeliveryError:
        status = response.status_code
        retryable = status in (408, 429) or status >= 500
        code = "RATE_LIMITED" if status == 429 else ("UNAVAILABLE" if retryable else "REJECTED")
        return DeliveryError(
            self.name,
            code,
            f"{self.name}: HTTP {status}" + (f" ({detail})" if detail else ""),
            status=status,
            retryable=retryable,
            retry_after=retry_after,
        )


class TelegramChannel(HttpChannel):
    """Bot API ``sendMessage`` to one chat."""

    name = "telegram"

    def __init__(self, *, api_url: str, bot_token: SecretStr, chat_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._token = bot_token
        self._url = f"{api_url.rstrip('/')}/bot{bot_token.get_secret_value()}/sendMessage"
        self._chat_id = chat_id
        _redactor.add(bot_token.get_secret_value())

    def _attempt(self, message: AlertMessage) -> None:
        response = self._post(
            self._url,
            {
                "chat_id": self._chat_id,
                "text": message.telegram_html(),
                "parse_mode": "HTML",
                "disable_web_page_preview": True,
            },
        )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code == 200 and body.get("ok") is True:
            return
        parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        retry_after = parameters.get("retry_after") if parameters else None
        detail = str(body.get("description", ""))[:200].replace(self._token.get_secret_value(), REDACTED)
        raise self._http_error(
            response, detail, float(retry_after) if isinstance(retry_after, int | float) else None
        )


class SlackChannel(HttpChannel):
    """An incoming webhook (the webhook URL is the credential)."""

    name = "slack"

    def __init__(self, *, webhook_url: SecretStr, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._url = webhook_url.get_secret_value()
        _redactor.add(self._url)
        # urllib3 logs the path alone, and the path is the secret part of a webhook URL.
        if len(path := urlsplit(self._url).path) > 1:
            _redactor.add(path)

    def _attempt(self, message: AlertMessage) -> None:
        response = self._post(self._url, {"text": message.slack_text(), "unfurl_links": False})
        if response.status_code == 200:
            return
        retry_after: float | None = None
        header = response.headers.get("Retry-After")
        if header and header.strip().isdigit():
            retry_after = float(header.strip())
        # Slack answers errors with a short code in plain text ("invalid_payload", "no_service");
        # anything else (an HTML error page) is not worth repeating.
        text = response.text.strip()
        detail = text if _SLACK_ERROR_CODE.fullmatch(text) else ""
        raise self._http_error(response, detail, retry_after)


def channels_from_settings(
    settings: Settings, *, session: requests.Session | None = None, sleep: Sleep = time.sleep
) -> list[Channel]:
    """The channels whose credentials are configured; an unconfigured one is simply absent."""
    common: dict[str, Any] = {
        "timeout_seconds": settings.external_timeout_seconds,
        "policy": RetryPolicy.from_settings(settings),
        "session": session,
        "sleep": sleep,
    }
    channels: list[Channel] = []
    if settings.telegram_bot_token and settings.telegram_chat_id:
        channels.append(
            TelegramChannel(
                api_url=settings.telegram_api_url,
                bot_token=settings.telegram_bot_token,
                chat_id=settings.telegram_chat_id,
                **common,
            )
        )
    if settings.slack_webhook_url:
        channels.append(SlackChannel(webhook_url=settings.slack_webhook_url, **common))
    return channels
