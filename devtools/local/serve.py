"""Serve a WSGI app on loopback in a background thread (tests, benchmarks, the local stack)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from services.runtime import Runtime


class _QuietHandler(WSGIRequestHandler):
    """Our own JSON logs say what happened; werkzeug's access lines would only repeat it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class BackgroundServer:
    """A WSGI app served by werkzeug (threaded) from a daemon thread; ``port=0`` takes a free port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler if quiet else None
        )
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        # A short poll interval keeps stop() (which waits for the next poll) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"serve:{self.url}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.stop()


def function_app(
    handler: Callable[[Runtime, flask.Request], flask.Response], rt: Runtime, name: str = "function"
) -> flask.Flask:
    """What functions-framework does for an HTTP target, with the runtime handed in: every path
    and method goes to the one handler."""
    app = flask.Flask(name)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def dispatch(path: str) -> flask.Response:
        return handler(rt, flask.request)

    return app
