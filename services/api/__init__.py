"""The API service: job status and search, execution logs, summary, control plane, audit, OpenAPI.

app = create_app(rt)      # a Flask app; functions/api.py serves it as the ``api`` target
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import flask

    from services.runtime import Runtime


def create_app(rt: Runtime | None = None, **kwargs: Any) -> flask.Flask:
    # Imported here so that importing a module of this package (services.api.indexes, run as a
    # script) does not build every blueprint.
    from services.api.app import create_app as _create_app

    return _create_app(rt, **kwargs)


__all__ = ["create_app"]
