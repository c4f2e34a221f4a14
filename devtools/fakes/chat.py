"""Fake Telegram Bot API (``sendMessage``) and Slack incoming webhook, served on loopback.

Real HTTP, shaped like the real services: Telegram answers ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}``; Slack answers ``ok``
in plain text or an error code with a status. Failures are scripted per service and consumed one
per request, before any real handling, so a test says exactly which attempts fail and how.

    with FakeChat() as chat:
        chat.telegram_rate_limited(retry_after=3)
        settings = Settings(telegram_api_url=chat.telegram_api_url, slack_webhook_url=chat.slack_webhook_url, ...)

``python -m devtools.fakes.chat --port 8091`` serves it for the local stack.
"""

from __future__ import annotations

import argparse
import threading
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import flask

from devtools.local.serve import BackgroundServer

DEFAULT_BOT_TOKEN = "123456:fake-bot-token"  # noqa: S105 (a fake service's fake credential)
DEFAULT_SLACK_PATH = "/slack/services/T0000/B0000/fake-webhook-secret"


@dataclass(frozen=True)
class Scripted:
    status: int
    body: Any  # dict -> JSON, str -> text/plain
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> flask.Response:
        if isinstance(self.body, dict):
            response = flask.jsonify(self.body)
        else:
            response = flask.Response(str(self.body), mimetype="text/plain")
        response.status_code = self.status
        response.headers.update(self.headers)
        return response


class FakeChat:
    def __init__(self, *, bot_token: str = DEFAULT_BOT_TOKEN, slack_path: str = DEFAULT_SLACK_PATH) -> None:
        self.bot_token = bot_token
        self.slack_path = slack_path
        # Messages accepted (what a person would have seen) and every request received, per service.
        self.telegram_messages: list[dict[str, Any]] = []
        self.slack_messages: list[dict[str, Any]] = []
        self.telegram_requests = 0
        self.slack_requests = 0
        self._telegram_script: deque[Scripted] = deque()
        self._slack_script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._server: BackgroundServer | None = None

    # ---- scripting ---------------------------------------------------------------------------
    def telegram_fails(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        with self._lock:
            self._telegram_script.append(Scripted(status, body))

    def telegram_rate_limited(self, retry_after: int) -> None:
        self.telegram_fails(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    def slack_fails(
        self, status: int, text: str = "internal_error", *, retry_after: int | None = None
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._slack_script.append(Scripted(status, text, headers))

    def reset(self) -> None:
        """Forget messages, counts and scripted failures (one server, many tests)."""
        with self._lock:
            self.telegram_messages.clear()
            self.slack_messages.clear()
            self.telegram_requests = self.slack_requests = 0
            self._telegram_script.clear()
            self._slack_script.clear()

    # ---- addresses ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeChat is not running; use it as a context manager")
        return self._server.url

    @property
    def telegram_api_url(self) -> str:
        return f"{self.url}/telegram"

    @property
    def slack_webhook_url(self) -> str:
        return f"{self.url}{self.slack_path}"

    # ---- the app -----------------------------------------------------------------------------
    def _next(self, script: deque[Scripted]) -> Scripted | None:
        with self._lock:
            return script.popleft() if script else None

    def app(self) -> flask.Flask:
        app = flask.Flask("fake_chat")

        @app.post("/telegram/bot<token>/sendMessage")
        def send_message(token: str) -> flask.Response:
            with self._lock:
                self.telegram_requests += 1
            if token != self.bot_token:
                return Scripted(
                    401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                ).response()
            if (scripted := self._next(self._telegram_script)) is not None:
                return scripted.response()
            payload = flask.request.get_json(silent=True) or {}
            if not payload.get("chat_id"):
                return Scripted(
                    400, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"}
                ).response()
            if not payload.get("text"):
                return Scripted(
                    400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
                ).response()
            with self._lock:
                self.telegram_messages.append(payload)
                message_id = len(self.telegram_messages)
            return flask.jsonify(
                {
                    "ok": True,
                    "result": {
                        "message_id": message_id,
                        "chat": {"id": payload["chat_id"]},
                        "text": payload["text"],
                    },
                }
            )

        @app.post(self.slack_path)
        def slack_webhook() -> flask.Response:
            with self._lock:
                self.slack_requests += 1
            if (scripted := self._next(self._slack_script)) is not None:
                return scripted.response()
            payload = flask.request.get_json(silent=True)
            if not isinstance(payload, dict) or not payload.get("text"):
                return Scripted(400, "invalid_payload").response()
            with self._lock:
                self.slack_messages.append(payload)
            return Scripted(200, "ok").response()

        return app

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeChat:
        self._server = BackgroundServer(self.app(), host, port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> FakeChat:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    chat = FakeChat().start(port=args.port)
    print(f"telegram_api_url={chat.telegram_api_url} slack_webhook_url={chat.slack_webhook_url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
