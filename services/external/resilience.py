"""What every HTTP client of the outside world shares: timeouts, a few retries, a breaker, typed errors.

The worker's Pub/Sub redelivery is the main retry loop; the retries here only smooth over blips, so
they are few (``external_max_attempts``) and short. Errors come in two kinds the worker acts on:
``RetryableExternalError`` (the service or the network is unwell: nack, let Pub/Sub redeliver) and
``PermanentExternalError`` (the service refused this input: fail the job now). Messages name the
service, the method and the path, never a full URL, a header or a secret.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pybreaker
import requests
import urllib3.exceptions
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from services.settings import Settings

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
_SERVER_DETAIL_LIMIT = 200

Sleep = Callable[[float], None]
ModelT = TypeVar("ModelT", bound=BaseModel)


class ExternalError(Exception):
    """A call to an outside service failed. ``code`` is stable; ``message`` is safe to log and show."""

    retryable: ClassVar[bool] = True

    def __init__(
        self,
        code: str,
        message: str,
        *,
        service: str,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_processed: bool = True,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.service = service
        self.status = status
        # Seconds the service asked us to wait (Retry-After), or until the breaker half-opens.
        self.retry_after = retry_after
        # False only when the service provably did not act on the request (refused connection,
        # 429, 503), which is what makes retrying a non-idempotent call safe.
        self.maybe_processed = maybe_processed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def to_error(self) -> dict[str, Any]:
        """The job's ``error`` fields (the stage is the caller's to add)."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class RetryableExternalError(ExternalError):
    """Infrastructure trouble: 5xx, 429, timeouts, connection errors, an open breaker."""

    retryable = True


class PermanentExternalError(ExternalError):
    """The service understood and refused (4xx other than 408/429): retrying cannot help."""

    retryable = False


class CircuitOpenError(RetryableExternalError):
    """The breaker is open: the call was not attempted."""


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _LogBreakerChanges(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        log.warning(
            "circuit breaker for %s: %s -> %s",
            cb.name,
            old_state.name if old_state else "none",
            new_state.name,
            extra={"external_service": cb.name, "breaker_state": new_state.name},
        )


def _replay(error: ExternalError | None) -> None:
    if error is not None:
        raise error


class CircuitGate:
    """pybreaker's state machine, asked before each call and told its outcome after.

    ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded call, which would let
    only one request per client be in flight at a time (danielfm/pybreaker#3, #55). Here the HTTP
    request runs outside the lock and its outcome is replayed through ``call`` afterwards, so
    pybreaker still owns counting, opening, half-opening and closing. While open, exactly one
    trial request at a time goes through once ``reset_seconds`` have passed.
    """

    def __init__(self, name: str, *, code_prefix: str, fail_max: int, reset_seconds: float) -> None:
        self.name = name
        self._code_prefix = code_prefix
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_seconds,
            # A 4xx proves the service is up and answering: it must not trip the breaker.
            exclude=[PermanentExternalError],
            listeners=[_LogBreakerChanges()],
            state_storage=self._storage,
            name=name,
            # The call that trips the breaker reports its own error; the next ones get CircuitOpenError.
            throw_new_error_on_trip=False,
        )
        self._trial_lock = threading.Lock()
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (pybreaker's names)."""
        return str(self._breaker.current_state)

    def _open_error(self, remaining: float | None) -> CircuitOpenError:
        return CircuitOpenError(
            f"{self._code_prefix}_CIRCUIT_OPEN",
            f"{self.name} is failing; its circuit breaker is open, so the call was not attempted",
            service=self.name,
            retry_after=remaining,
            maybe_processed=False,
        )

    def admit(self) -> bool:
        """Raise ``CircuitOpenError`` if the call may not go; return True if it is the trial call."""
        if self._breaker.current_state == pybreaker.STATE_CLOSED:
            return False
        opened_at = self._storage.opened_at
        if self._breaker.current_state == pybreaker.STATE_OPEN and opened_at is not None:
            reopens_at = opened_at + timedelta(seconds=self._breaker.reset_timeout)
            remaining = (reopens_at - datetime.now(UTC)).total_seconds()
            if remaining > 0:
                raise self._open_error(remaining)
        with self._trial_lock:
            if self._trial_in_flight:
                raise self._open_error(None)
            self._trial_in_flight = True
        return True

    def record(self, error: ExternalError | None, *, trial: bool) -> None:
        """Feed one call's outcome to the breaker (None: success)."""
        try:
            self._breaker.call(_replay, error)
        except pybreaker.CircuitBreakerError:
            # Another caller opened the breaker while this request was in flight; this outcome
            # no longer changes anything.
            pass
        except ExternalError:
            pass  # counted; the caller raises it
        finally:
            self.release(trial=trial)

    def release(self, *, trial: bool) -> None:
        """End a call without an outcome to count (it failed on our side, not the service's)."""
        if trial:
            with self._trial_lock:
                self._trial_in_flight = False


def _never_reached_server(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _server_detail(response: requests.Response) -> str:
    """The service's own words about a failure (its ``msg``/``message``/``error``), if any."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    for key in ("msg", "message", "error", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


class ResilientHttp:
    """One outside service: its session, timeout, retry policy, breaker and error vocabulary.

    Error codes are ``{code_prefix}_UNAVAILABLE`` (5xx, connection), ``_TIMEOUT``, ``_RATE_LIMITED``
    (429), ``_CIRCUIT_OPEN``, ``_AUTH_FAILED`` (401/403), ``_REJECTED`` (other 4xx),
    ``_BAD_RESPONSE`` (a 2xx body that does not parse) and ``_REQUEST_INVALID`` (a URL requests
    cannot even send to: configuration).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        service: str,
        code_prefix: str,
        base_url: str,
        session: requests.Session | None = None,
        secrets: Iterable[SecretStr | None] = (),
        sleep: Sleep = time.sleep,
    ) -> None:
        self.service = service
        self.code_prefix = code_prefix
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self._timeout = settings.external_timeout_seconds
        self._max_attempts = settings.external_max_attempts
        self._backoff = wait_exponential_jitter(
            multiplier=settings.external_backoff_initial_seconds,
            max=settings.external_backoff_max_seconds,
            jitter=settings.external_backoff_initial_seconds,
        )
        self._retry_after_max = settings.external_retry_after_max_seconds
        self._secrets = [s.get_secret_value() for s in secrets if s is not None]
        self._sleep = sleep
        self.breaker = CircuitGate(
            service,
            code_prefix=code_prefix,
            fail_max=settings.breaker_fail_max,
            reset_seconds=settings.breaker_reset_seconds,
        )

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    # --- errors -------------------------------------------------------------------------------

    def error(self, cls: type[ExternalError], suffix: str, message: str, **kwargs: Any) -> ExternalError:
        return cls(f"{self.code_prefix}_{suffix}", self.redact(message), service=self.service, **kwargs)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def error_for_status(
        self, status: int, response: requests.Response, *, method: str, path: str
    ) -> ExternalError | None:
        """The error an answer with this status means, or None for success.

        ``status`` is usually the HTTP status; services that put their own code in the body
        (Suno) pass that instead.
        """
        if 200 <= status < 300:
            return None
        detail = _server_detail(response)[:_SERVER_DETAIL_LIMIT]
        said = f"{self.service} answered {status} to {method} {path}" + (f": {detail}" if detail else "")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            return self.error(
                RetryableExternalError,
                "RATE_LIMITED",
                said,
                status=status,
                retry_after=retry_after,
                maybe_processed=False,
            )
        if status == 408:
            return self.error(RetryableExternalError, "TIMEOUT", said, status=status)
        if status >= 500:
            return self.error(
                RetryableExternalError,
                "UNAVAILABLE",
                said,
                status=status,
                retry_after=retry_after,
                maybe_processed=status != 503,
            )
        if status in (401, 403):
            return self.error(PermanentExternalError, "AUTH_FAILED", said, status=status)
        if 400 <= status < 500:
            return self.error(PermanentExternalError, "REJECTED", said, status=status)
        return self.error(PermanentExternalError, "BAD_RESPONSE", said, status=status)

    def bad_response(self, method: str, path: str, why: str) -> ExternalError:
        return self.error(
            PermanentExternalError,
            "BAD_RESPONSE",
            f"{self.service} gave an unusable answer to {method} {path}: {why}",
        )

    def parse(self, response: requests.Response, model: type[ModelT], *, method: str, path: str) -> ModelT:
        """A 2xx JSON body as ``model``; anything else is ``{prefix}_BAD_RESPONSE``."""
        try:
            return model.model_validate(response.json())
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError both are
            count = exc.error_count() if isinstance(exc, ValidationError) else 0
            why = f"{count} invalid field(s) for {model.__name__}" if count else "not JSON"
            raise self.bad_response(method, path, why) from None

    # --- calls --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        interpret: Callable[[requests.Response], ExternalError | None] | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """Send one logical request with retries; return the 2xx response or raise ``ExternalError``.

        A non-idempotent call is retried only when the service provably did not act on it.
        ``interpret`` lets a client read its service's own error envelope before the HTTP status.
        ``timeout`` (default external_timeout_seconds) bounds each attempt, for a caller with a budget.
        """

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, RetryableExternalError) or isinstance(exc, CircuitOpenError):
                return False
            if not idempotent and exc.maybe_processed:
                return False
            return exc.retry_after is None or exc.retry_after <= self._retry_after_max

        retrying = Retrying(
            sleep=self._sleep,
            stop=stop_after_attempt(max_attempts or self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(should_retry),
            before_sleep=lambda state: self._log_retry(state, method, path),
            reraise=True,
        )
        return retrying(
            self._attempt,
            method,
            path,
            json=json,
            params=params,
            headers=headers,
            interpret=interpret,
            timeout=timeout or self._timeout,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ExternalError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState, method: str, path: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = exc.code if isinstance(exc, ExternalError) else type(exc).__name__
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s %s %s failed (%s); retry in %.2fs (attempt %d of %d)",
            self.service,
            method,
            path,
            code,
            wait,
            state.attempt_number,
            self._max_attempts,
            extra={"external_service": self.service, "error_code": code},
        )

    def _attempt(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        interpret: Callable[[requests.Response], ExternalError | None] | None,
        timeout: float,
    ) -> requests.Response:
        trial = self.breaker.admit()
        try:
            response, error = self._send(
                method, path, json=json, params=params, headers=headers, timeout=timeout
            )
            if response is not None and error is None:
                error = (interpret(response) if interpret else None) or self.error_for_status(
                    response.status_code, response, method=method, path=path
                )
        except BaseException:
            self.breaker.release(trial=trial)
            raise
        self.breaker.record(error, trial=trial)
        if error is not None:
            # Drop the frames of the replay through the breaker; they only confuse a reader.
            raise error.with_traceback(None)
        assert response is not None
        return response

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> tuple[requests.Response | None, ExternalError | None]:
        # The requests exceptions are not chained onto ours: their text carries the full URL.
        try:
            response = self.session.request(
                method,
                f"{self.base_url}{path}",
                json=json,
                params=params,
                headers=dict(headers or {}),
                timeout=timeout,
            )
        except requests.Timeout as exc:
            return None, self.error(
                RetryableExternalError,
                "TIMEOUT",
                f"{self.service} did not answer {method} {path} within {timeout:g}s",
                maybe_processed=not _never_reached_server(exc),
            )
        except requests.ConnectionError as exc:
            return None, self.error(
                RetryableExternalError,
                "UNAVAILABLE",
                f"{self.service} could not be reached for {method} {path} ({type(exc).__name__})",
                maybe_processed=not _never_reached_server(exc),
            )
        except requests.RequestException as exc:
            return None, self.error(
                PermanentExternalError,
                "REQUEST_INVALID",
                f"{self.service} {method} {path} could not be sent ({type(exc).__name__}); check its URL setting",
            )
        return response, None
