"""What every HTTP entry point shares: bounded body reading, model parsing, error bodies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from services.errors import InvalidInput, JobtrailError, PayloadTooLarge, store_unavailable

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

# Cloud Run's startup and liveness probes (terraform/modules/functions) ask every service here. Not
# "/healthz": Cloud Run reserves paths ending in "z" on its public URLs.
HEALTH_PATH = "/health"


def health_response(name: str, settings: Any) -> flask.Response:
    """The probe's answer: the process serves. It touches no dependency, so a Firestore outage
    does not make Cloud Run kill every instance."""
    return json_response({"status": "ok", "entryPoint": name, "revision": settings.k_revision})


def read_body(request: flask.Request, max_bytes: int) -> bytes:
    """The raw body, refusing more than ``max_bytes`` before reading it all into memory."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {max_bytes}")
    body = request.stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
    return body


def parse_model(model: type[M], raw: bytes | str) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise InvalidInput("body is not valid JSON") from exc
        raise InvalidInput("body does not match the expected shape", problems=problems) from exc


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def error_response(exc: JobtrailError) -> flask.Response:
    headers = {"Retry-After": str(exc.retry_after_seconds)} if exc.retry_after_seconds else None
    return json_response(exc.to_body(), exc.http_status, headers)


def outage_response(exc: Exception) -> flask.Response | None:
    """The answer to a client library's exception that means a dependency is down (503 with
    Retry-After), or None when it means something else (a bug: the caller's 500)."""
    typed = store_unavailable(exc)
    if typed is None:
        return None
    log.warning("Firestore unavailable (%s); answered %s", type(exc).__name__, typed.http_status)
    return error_response(typed)


def with_errors(handler: Callable[..., flask.Response]) -> Callable[..., flask.Response]:
    """Map typed errors raised anywhere below an entry point, and dependency outages, to their
    status and JSON body."""

    @wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> flask.Response:
        try:
            return handler(*args, **kwargs)
        except JobtrailError as exc:
            return error_response(exc)
        except Exception as exc:
            outage = outage_response(exc)
            if outage is None:
                raise
            return outage

    return wrapped


def entry_point(name: str) -> Callable[[Callable[..., flask.Response]], Callable[..., flask.Response]]:
    """What every functions-framework HTTP target gets for free: telemetry set up once, GET /metrics, a SERVER
    span continuing the caller's trace (traceparent or X-Cloud-Trace-Context), one access log line
    with httpRequest, and typed errors mapped to their status and JSON body.

    Handlers take ``(rt, request)``; the span and log carry no body, header or query string, so no
    secret in them can leak.
    """

    def decorate(handler: Callable[..., flask.Response]) -> Callable[..., flask.Response]:
        handler = with_errors(handler)

        @wraps(handler)
        def wrapped(rt: Any, request: flask.Request) -> flask.Response:
            from opentelemetry import propagate
            from opentelemetry.trace import SpanKind

            from services.telemetry import get_logger, get_tracer, metrics_response, setup_telemetry

            if request.method == "GET" and request.path == HEALTH_PATH:
                return health_response(name, rt.settings)
            telemetry = setup_telemetry(rt.settings)
            # Only where Prometheus is the exporter (local, self-hosted): deployed services export to
            # Cloud Monitoring and leave the path alone, so public ones expose nothing extra.
            if (
                rt.settings.metrics_exporter == "prometheus"
                and request.method == "GET"
                and request.path == "/metrics"
            ):
                # Every instance answers Prometheus scrapes (seed 004's worker-host:8000/metrics).
                body, content_type = metrics_response()
                return flask.Response(body, content_type=content_type)
            started = time.perf_counter()
            with get_tracer("jobtrail.entry").start_as_current_span(
                f"{request.method} {name}",
                context=propagate.extract(dict(request.headers)),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": request.method, "url.path": request.path},
            ) as span:
                response = handler(rt, request)
                span.set_attribute("http.response.status_code", response.status_code)
                level = logging.WARNING if response.status_code >= 400 else logging.INFO
                get_logger(f"jobtrail.{name}").log(
                    level,
                    "%s %s -> %s",
                    request.method,
                    name,
                    response.status_code,
                    extra={
                        "http_request": {
                            "requestMethod": request.method,
                            "requestUrl": request.path,
                            "status": response.status_code,
                            "latency": f"{time.perf_counter() - started:.3f}s",
                            "userAgent": request.user_agent.string,
                        }
                    },
                )
            # With CPU only during requests, background exporters stall between them: export now,
            # while this request still holds the CPU.
            if rt.settings.cpu_allocation == "request":
                telemetry.flush_after_request()
            return response

        return wrapped

    return decorate
