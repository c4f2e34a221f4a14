"""The OpenAPI 3.1 document of the API, generated from the declared routes and their pydantic models.

Served at GET /openapi.json. Every ``ApiBlueprint`` route is in it (Music Clips' included); the
live stream and the page are served by blueprints of their own.
"""

from __future__ import annotations

import copy
from typing import Any

import flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from services.api.routing import JSON_MEDIA_TYPE, ApiBlueprint, Operation, current_runtime
from services.api.schemas import ErrorBody, Health, OpenApiDocument
from services.http import HEALTH_PATH

bp = ApiBlueprint("openapi", __name__)

ERROR_DESCRIPTIONS = {
    400: "Invalid input (INVALID_INPUT)",
    401: "No or bad credentials (UNAUTHORIZED)",
    402: "Not enough credits on the outside service's account (SUNO_NO_CREDITS)",
    403: "Not allowed for this principal (FORBIDDEN)",
    404: "Not found, or not yours (JOB_NOT_FOUND, NOT_FOUND, QUEUE_NOT_FOUND)",
    409: "The job's state does not allow it (ILLEGAL_TRANSITION, TRANSITION_CONFLICT, NOT_DEAD_LETTERED)",
    413: "Body too large (PAYLOAD_TOO_LARGE)",
    503: "A dependency is unavailable or refused the change; nothing was changed, try again after"
    " Retry-After (STORE_UNAVAILABLE, PUBSUB_UNAVAILABLE)",
}
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "claims: sub (user id), role (admin or user), exp",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "machine principals (admins); keys are configured as sha256 hashes",
    },
    "reporterKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Reporter-Key",
        "description": "a reporting service's key (ingest); configured as sha256 hashes",
    },
    "googleIdToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a Google-signed ID token of a reporting service's service account (ingest)",
    },
    "token": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "Suno's callback token, in the callback URL jobtrail gave Suno",
    },
}


def operations(app: flask.Flask) -> list[Operation]:
    return [
        op
        for blueprint in app.blueprints.values()
        if isinstance(blueprint, ApiBlueprint)
        for op in blueprint.operations
    ]


def build_spec(ops: list[Operation]) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for op in ops:
        if op.media_type == JSON_MEDIA_TYPE:
            wanted += [(model, "serialization") for model in op.responses.values()]
        if op.body is not None:
            wanted.append((op.body, "validation"))
    refs, top = models_json_schema(list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(refs[(model, mode)])

    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _path_parameters(op) + (_query_parameters(op.query) if op.query else []),
            "responses": {},
        }
        if op.description:
            item["description"] = op.description
        if op.body is not None:
            item["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": ref(op.body, "validation")}},
            }
        for status, model in op.responses.items():
            schema = (
                ref(model, "serialization")
                if op.media_type == JSON_MEDIA_TYPE
                else {"type": "string", "description": (model.__doc__ or "").strip()}
            )
            item["responses"][str(status)] = {
                "description": model.__doc__.strip().splitlines()[0] if model.__doc__ else "OK",
                "content": {op.media_type: {"schema": schema}},
            }
        for status in _error_statuses(op):
            item["responses"][str(status)] = {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": ref(ErrorBody, "serialization")}},
            }
        item["security"] = [{scheme: []} for scheme in op.security_schemes]
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobtrail API",
            "version": "1.0.0",
            "description": "Status, search, execution logs and the control plane of jobtrail's pipelines.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


def _error_statuses(op: Operation) -> list[int]:
    statuses = set(op.errors)
    if op.query is not None or op.body is not None:
        statuses.add(400)
    if op.body is not None:
        statuses.add(413)
    if op.security_schemes:
        statuses.add(401)
        statuses.add(503)  # a signed-in request reads the job store, which may be unreachable
    return sorted(statuses)


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": op.path_schemas.get(name, {"type": "string"}),
        }
        for name in op.path_params
    ]


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One parameter per field; optional fields lose their null branch (absent means null)."""
    schema = model.model_json_schema(
        by_alias=True, mode="validation", ref_template="#/components/schemas/{model}"
    )
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        prop = _inline(copy.deepcopy(prop), defs)
        branches = prop.pop("anyOf", None)
        if branches is not None:
            concrete = [b for b in branches if b.get("type") != "null"]
            prop = {**(concrete[0] if len(concrete) == 1 else {"anyOf": concrete}), **prop}
        if prop.get("default", 0) is None:
            prop.pop("default")
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _inline(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Query parameters carry plain schemas (enums inlined), not references."""
    if "$ref" in prop:
        target = defs[prop.pop("$ref").rsplit("/", 1)[-1]]
        prop = {**copy.deepcopy(target), **prop}
        prop.pop("title", None)
    if "anyOf" in prop:
        prop["anyOf"] = [_inline(b, defs) for b in prop["anyOf"]]
    return prop


SPEC_EXTENSION = "jobtrail.openapi"


def spec_of(app: flask.Flask) -> dict[str, Any]:
    """The app's document, built on first use (routes are fixed once the app is built)."""
    spec = app.extensions.get(SPEC_EXTENSION)
    if spec is None:
        spec = app.extensions[SPEC_EXTENSION] = build_spec(operations(app))
    return dict(spec)


@bp.operation(
    "GET",
    "/openapi.json",
    summary="This OpenAPI document",
    responses={200: OpenApiDocument},
    authenticated=False,
)
def get_openapi(call: None) -> OpenApiDocument:
    return OpenApiDocument(spec_of(flask.current_app))


@bp.operation(
    "GET",
    HEALTH_PATH,
    summary="Cloud Run's startup and liveness probe: the instance serves (no dependency is asked)",
    responses={200: Health},
    authenticated=False,
)
def get_health(call: None) -> Health:
    settings = current_runtime().settings
    return Health(status="ok", entryPoint="api", revision=settings.k_revision)
