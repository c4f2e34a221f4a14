"""Declared routes: each one registers a Flask view and describes itself for the OpenAPI document.

A handler gets a ``Call`` (runtime, principal) and the parsed query and body models, and returns
a response model (or ``(model, status)``, or a finished Response from a handler that also serves
a functions entry point); typed errors raised below it become their JSON body.
Because the same declaration drives routing, parsing and the spec, the spec cannot miss a route.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
from pydantic import BaseModel, ValidationError

from services.auth import Principal, request_principal
from services.errors import InvalidInput
from services.http import json_response, read_body
from services.runtime import Runtime

RUNTIME_EXTENSION = "jobtrail.runtime"
JSON_MEDIA_TYPE = "application/json"
MAX_BODY_BYTES = 64 * 1024
_PATH_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")


def current_runtime() -> Runtime:
    runtime: Runtime = flask.current_app.extensions[RUNTIME_EXTENSION]
    return runtime


@dataclass(frozen=True)
class Call:
    rt: Runtime
    principal: Principal


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str  # Flask rule, e.g. /api/jobs/<jobId>
    operation_id: str
    summary: str
    tag: str
    responses: dict[int, type[BaseModel]]  # success status -> body model
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    authenticated: bool = True
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    body_required: bool = True
    # OpenAPI security schemes; by default the API's credentials when authenticated, else none.
    # A route with credentials of its own (Suno's callback token) names its scheme here.
    security: tuple[str, ...] | None = None
    # The success answer's media type; other than JSON, the handler returns its own Response and
    # the document describes the body as a string of that type (the CSV export).
    media_type: str = JSON_MEDIA_TYPE

    @property
    def security_schemes(self) -> tuple[str, ...]:
        if self.security is not None:
            return self.security
        return ("bearerAuth", "apiKey") if self.authenticated else ()

    @property
    def path(self) -> str:
        """The OpenAPI path: /api/jobs/{jobId}."""
        return _PATH_PARAM.sub(r"{\1}", self.rule)

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.rule)


Handler = Callable[..., Any]


class ApiBlueprint(flask.Blueprint):
    """A blueprint whose routes are declared with ``operation`` and so appear in /openapi.json."""

    def __init__(self, name: str, import_name: str) -> None:
        super().__init__(name, import_name)
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        rule: str,
        *,
        summary: str,
        responses: dict[int, type[BaseModel]],
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        errors: tuple[int, ...] = (),
        authenticated: bool = True,
        path_schemas: dict[str, dict[str, Any]] | None = None,
        body_required: bool = True,
        security: tuple[str, ...] | None = None,
        media_type: str = JSON_MEDIA_TYPE,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            op = Operation(
                method=method,
                rule=rule,
                operation_id=handler.__name__,
                summary=summary,
                tag=self.name,
                responses=responses,
                query=query,
                body=body,
                errors=errors,
                authenticated=authenticated,
                path_schemas=path_schemas or {},
                description=(handler.__doc__ or "").strip(),
                body_required=body_required,
                security=security,
                media_type=media_type,
            )
            self.operations.append(op)

            def view(**path_params: Any) -> flask.Response:
                return _dispatch(op, handler, path_params)

            self.add_url_rule(
                rule,
                endpoint=handler.__name__,
                view_func=view,
                methods=[method],
                provide_automatic_options=False,
            )
            return handler

        return register


def _dispatch(op: Operation, handler: Handler, path_params: dict[str, Any]) -> flask.Response:
    rt = current_runtime()
    kwargs: dict[str, Any] = {_snake(name): value for name, value in path_params.items()}
    if op.authenticated:
        kwargs["call"] = Call(rt=rt, principal=request_principal(flask.request))
    else:
        kwargs["call"] = None
    if op.query is not None:
        kwargs["query"] = _parse_query(op.query, flask.request.args)
    if op.body is not None:
        raw = read_body(flask.request, MAX_BODY_BYTES)
        kwargs["body"] = op.body() if not op.body_required and not raw.strip() else _parse_body(op.body, raw)
    result = handler(**kwargs)
    if isinstance(result, flask.Response):  # a handler shared with a functions entry point
        return result
    model, status = result if isinstance(result, tuple) else (result, next(iter(op.responses)))
    return json_response(model.model_dump(mode="json", by_alias=True), status)


def _parse_query(model: type[BaseModel], args: Any) -> BaseModel:
    """Query-string parameters (first value of each) -> ``model``; 400 on a bad value."""
    try:
        return model.model_validate({key: args.get(key) for key in args})
    except ValidationError as exc:
        raise InvalidInput(
            "query parameters do not match the expected shape",
            problems=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from exc


def _parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise InvalidInput("body is not valid JSON") from exc
        raise InvalidInput("body does not match the expected shape", problems=problems) from exc


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
