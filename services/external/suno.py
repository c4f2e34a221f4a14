"""Suno through sunoapi.org: start a generation, read its record, read its callback.

The shapes follow https://docs.sunoapi.org:

- ``POST /api/v1/generate`` ``{prompt, customMode, instrumental, model, callBackUrl[, style, title]}``
  answers ``{code, msg, data: {taskId}}``;
- ``GET /api/v1/generate/record-info?taskId=`` answers ``{code, msg, data: {taskId, status,
  response: {sunoData: [{audioUrl, ...}]}, errorCode, errorMessage}}``;
- ``GET /api/v1/generate/credit`` answers ``{code, msg, data: <credits left>}``;
- the callback POSTed to ``callBackUrl`` is ``{code, msg, data: {callbackType, task_id,
  data: [{audio_url, ...}]}}``, with ``callbackType`` one of text, first, complete, error.

sunoapi.org reports errors in the body's ``code`` whatever the HTTP status, so that code is read
first: 429 means insufficient credits (``SunoNoCredits``, permanent: topping up is a person's
job, not a retry's), 430 "call frequency too high" is a rate limit and 455 "maintenance" is an
outage (both retryable); the rest map like HTTP statuses. A generate is not idempotent (each one
spends credits), so it is retried only when Suno provably did not start it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from services.errors import InvalidInput
from services.external.resilience import ExternalError, PermanentExternalError, ResilientHttp, Sleep
from services.settings import Settings

GENERATE_PATH = "/api/v1/generate"
RECORD_INFO_PATH = "/api/v1/generate/record-info"
CREDIT_PATH = "/api/v1/generate/credit"

NO_CREDITS_CODE = 429
# Suno's own codes that mean the same as an HTTP status we already classify.
_CODE_AS_HTTP_STATUS = {430: 429, 455: 503}

# Task statuses (record-info ``status``; callbacks are mapped onto the same words).
PENDING = "PENDING"
TEXT_SUCCESS = "TEXT_SUCCESS"
FIRST_SUCCESS = "FIRST_SUCCESS"
SUCCESS = "SUCCESS"
GENERATE_AUDIO_FAILED = "GENERATE_AUDIO_FAILED"
FAILED_STATUSES = frozenset(
    {"CREATE_TASK_FAILED", GENERATE_AUDIO_FAILED, "CALLBACK_EXCEPTION", "SENSITIVE_WORD_ERROR"}
)
_CALLBACK_STATUS = {"text": TEXT_SUCCESS, "first": FIRST_SUCCESS, "complete": SUCCESS}


class SunoNoCredits(PermanentExternalError):
    """The account cannot pay for a generation."""

    def __init__(self, message: str, *, credits: int | None = None, status: int | None = None) -> None:
        super().__init__("SUNO_NO_CREDITS", message, service="Suno", status=status, maybe_processed=False)
        # Credits left, when Suno would say (it usually still has a few, just not enough).
        self.credits = credits


class _TaskState(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    audio_url: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCESS

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed


class SunoRecord(_TaskState):
    """What record-info says about a task now."""


class SunoCallback(_TaskState):
    """What one callback says; the same task may call back several times (text, first, complete)."""

    task_id: str


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _Envelope(_Wire):
    code: int
    msg: str = ""
    data: Any = None


class _Generated(_Wire):
    task_id: str


class _Track(_Wire):
    audio_url: str | None = None


class _RecordResponse(_Wire):
    suno_data: list[_Track] | None = None


class _Record(_Wire):
    status: str
    response: _RecordResponse | None = None
    error_message: str | None = None


class _CallbackTrack(BaseModel):
    model_config = ConfigDict(extra="ignore")

    audio_url: str | None = None


class _CallbackData(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    callback_type: str = ""
    task_id: str
    data: list[_CallbackTrack] | None = None
    error: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> _CallbackData:
        return cls.model_validate(
            {
                "callback_type": data.get("callbackType", ""),
                "task_id": data.get("task_id") or data.get("taskId"),
                "data": data.get("data"),
                "error": data.get("error"),
            }
        )


def _first_audio_url(tracks: list[_Track] | list[_CallbackTrack] | None) -> str | None:
    return next((t.audio_url for t in tracks or () if t.audio_url), None)


def parse_callback(body: Mapping[str, Any]) -> SunoCallback:
    """A Suno callback body as a ``SunoCallback``; ``InvalidInput`` (400) if it is not one."""
    try:
        envelope = _Envelope.model_validate(body)
        if not isinstance(envelope.data, Mapping):
            raise InvalidInput("Suno callback has no data object")
        data = _CallbackData.from_wire(envelope.data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise InvalidInput("Suno callback is malformed", fields=fields) from None
    if envelope.code != 200 or data.callback_type == "error":
        return SunoCallback(
            task_id=data.task_id,
            status=GENERATE_AUDIO_FAILED,
            error=data.error or envelope.msg or f"Suno reported code {envelope.code}",
        )
    status = _CALLBACK_STATUS.get(data.callback_type)
    if status is None:
        raise InvalidInput("Suno callback has an unknown callbackType", callbackType=data.callback_type[:40])
    return SunoCallback(task_id=data.task_id, status=status, audio_url=_first_audio_url(data.data))


class SunoClient:
    def __init__(
        self, settings: Settings, session: requests.Session | None = None, *, sleep: Sleep = time.sleep
    ) -> None:
        self._api_key = settings.suno_api_key
        self._model = settings.suno_model
        self.http = ResilientHttp(
            settings,
            service="Suno",
            code_prefix="SUNO",
            base_url=settings.suno_api_url,
            session=session,
            # The callback URL may carry our callback token; neither may leak through a message.
            secrets=(settings.suno_api_key, settings.suno_callback_token),
            sleep=sleep,
        )

    def close(self) -> None:
        self.http.close()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}

    def _read_envelope_code(
        self, method: str, path: str
    ) -> Callable[[requests.Response], ExternalError | None]:
        def interpret(response: requests.Response) -> ExternalError | None:
            try:
                body = response.json()
            except ValueError:
                return None
            code = body.get("code") if isinstance(body, dict) else None
            if not isinstance(code, int) or code == 200:
                return None
            if code == NO_CREDITS_CODE:
                detail = self.http.redact(str(body.get("msg") or ""))[:200]
                return SunoNoCredits(
                    "Suno has not enough credits for a generation" + (f": {detail}" if detail else ""),
                    status=code,
                )
            return self.http.error_for_status(
                _CODE_AS_HTTP_STATUS.get(code, code), response, method=method, path=path
            )

        return interpret

    def _data(self, response: requests.Response, model: type[_Wire], *, method: str, path: str) -> Any:
        envelope = self.http.parse(response, _Envelope, method=method, path=path)
        try:
            return model.model_validate(envelope.data)
        except ValidationError as exc:
            raise self.http.bad_response(
                method, path, f"{exc.error_count()} invalid field(s) in data"
            ) from None

    def generate(
        self, prompt: str, callback_url: str, *, style: str = "", title: str = "", instrumental: bool = False
    ) -> str:
        """Start a generation; return Suno's taskId. The result comes by callback or record_info."""
        custom = bool(style or title)
        body: dict[str, Any] = {
            "prompt": prompt,
            "customMode": custom,
            "instrumental": instrumental,
            "model": self._model,
            "callBackUrl": callback_url,
        }
        if custom:
            body |= {"style": style, "title": title}
        try:
            response = self.http.request(
                "POST",
                GENERATE_PATH,
                json=body,
                headers=self._auth(),
                idempotent=False,
                interpret=self._read_envelope_code("POST", GENERATE_PATH),
            )
        except SunoNoCredits as exc:
            exc.credits = self._credits_if_known()
            raise
        generated: _Generated = self._data(response, _Generated, method="POST", path=GENERATE_PATH)
        return generated.task_id

    def record_info(self, task_id: str) -> SunoRecord:
        """The task as Suno sees it now (the polling fallback when no callback comes)."""
        response = self.http.request(
            "GET",
            RECORD_INFO_PATH,
            params={"taskId": task_id},
            headers=self._auth(),
            interpret=self._read_envelope_code("GET", RECORD_INFO_PATH),
        )
        record: _Record = self._data(response, _Record, method="GET", path=RECORD_INFO_PATH)
        tracks = record.response.suno_data if record.response else None
        return SunoRecord(
            status=record.status,
            audio_url=_first_audio_url(tracks),
            error=record.error_message or (record.status if record.status in FAILED_STATUSES else None),
        )

    def remaining_credits(self, *, max_attempts: int | None = None, timeout: float | None = None) -> int:
        response = self.http.request(
            "GET",
            CREDIT_PATH,
            headers=self._auth(),
            interpret=self._read_envelope_code("GET", CREDIT_PATH),
            max_attempts=max_attempts,
            timeout=timeout,
        )
        envelope = self.http.parse(response, _Envelope, method="GET", path=CREDIT_PATH)
        if not isinstance(envelope.data, int):
            raise self.http.bad_response("GET", CREDIT_PATH, "credits are not a number")
        return envelope.data

    def _credits_if_known(self) -> int | None:
        # One quick look for the error's benefit; its failure must not hide the no-credits error.
        try:
            return self.remaining_credits(max_attempts=1)
        except ExternalError:
            return None
