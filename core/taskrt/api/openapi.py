"""The OpenAPI document: error responses, the role each operation needs, the problem media type.

FastAPI writes every response model under ``application/json``; error answers are
``application/problem+json``, so :func:`build_openapi` moves them there. Each operation of
``/api/v1`` carries ``x-taskrt-role``, the least role that may call it, which the generated
HTTP reference (``python -m scripts.refdocs http``) turns into its roles table.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from taskrt.api.errors import PROBLEM_MEDIA_TYPE
from taskrt.api.schemas import Problem
from taskrt.auth import Role

ROLE_KEY = "x-taskrt-role"

_DESCRIPTIONS = {
    400: "The body is not JSON.",
    401: "No credentials, or credentials no auth backend accepts.",
    403: "The caller's role is too low for this operation.",
    404: "No such object.",
    409: "The object cannot make that move in its current state.",
    413: "The request body is larger than `TASKRT_API_MAX_BODY_BYTES`.",
    422: "The request is not valid; `errors` lists every problem with its field path.",
    429: "Rate limit exceeded, or (creating tasks) a tenant's quota refused them: type "
    "`quota-exceeded`, with `quota` and `limit`; `Retry-After` says when to come back.",
    503: "The database or Redis did not answer.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ``codes`` as problem answers."""
    return {code: {"model": Problem, "description": _DESCRIPTIONS[code]} for code in codes}


PROBLEMS = problems(400, 401, 403, 413, 422, 429, 503)
"""Answers any ``/api/v1`` operation may give."""
NOT_FOUND = problems(404)
CONFLICT = problems(409)


def role_doc(role: Role) -> dict[str, Any]:
    """``openapi_extra`` naming the least role an operation needs."""
    return {ROLE_KEY: role.value}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once), with error answers as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if code.isdigit() and int(code) >= 400 and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    app.openapi_schema = schema
    return schema
