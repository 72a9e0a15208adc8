"""One error shape for every answer that is not a success: ``application/problem+json``.

Every error carries ``type``, ``title``, ``status`` and ``detail`` (RFC 9457) plus the request's
``request_id``; validation errors add ``errors``, one entry per problem with its field path
(``loc``) and message. Unexpected exceptions are logged with their traceback and answered with a
plain 500: no stack trace, SQL or exception text ever reaches a client.
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskrt.api.request_ids import request_id_of
from taskrt.api.schemas import Problem, ProblemError
from taskrt.exceptions import (
    BackendUnavailableError,
    InvalidStateError,
    NotFoundError,
    QuotaExceededError,
    ValidationError,
)

log = logging.getLogger("taskrt.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:taskrt:problem:"

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


def problem_type(status: int) -> str:
    """The ``type`` URI of a problem with HTTP status ``status``."""
    return TYPE_PREFIX + _SLUGS.get(status, f"http-{status}")


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemResponse(JSONResponse):
    """A JSON response with the problem media type."""

    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    status: int,
    detail: str,
    *,
    request_id: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """The problem+json response for ``status``."""
    body = Problem(
        type=problem_type(status),
        title=_title(status),
        status=status,
        detail=_printable(detail),
        request_id=request_id,
        errors=None if errors is None else [_error_item(e) for e in errors],
    )
    return ProblemResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers
    )


def _error_item(error: Mapping[str, Any]) -> ProblemError:
    loc = [
        part if isinstance(part, int) else _printable(str(part)) for part in error.get("loc", ())
    ]
    return ProblemError(loc=loc, msg=_printable(str(error.get("msg", ""))), type=error.get("type"))


def _printable(text: str) -> str:
    """``text`` that can be encoded as UTF-8: a message quoting the client's input may carry
    its lone surrogates, which would make the error response itself fail."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def prefixed(errors: Iterable[Mapping[str, Any]], *prefix: str | int) -> list[dict[str, Any]]:
    """Errors of the service layer with ``prefix`` (e.g. ``"body"``) put before each loc."""
    return [{**e, "loc": [*prefix, *e.get("loc", ())]} for e in errors]


class LocatedValidationError(ValidationError):
    """A service-layer ValidationError whose field paths now say where in the request they are."""


def locate(exc: ValidationError, *prefix: str | int) -> LocatedValidationError:
    """``exc`` with every loc prefixed (``locate(exc, "body")``); an error without a list of
    problems gets one entry at ``prefix`` itself."""
    errors = exc.errors or [{"loc": [], "msg": str(exc)}]
    return LocatedValidationError(str(exc), prefixed(errors, *prefix))


# --- handlers ---------------------------------------------------------------------------------


async def _on_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ValidationError)
    errors = exc.errors if isinstance(exc, LocatedValidationError) else prefixed(exc.errors)
    return problem_response(
        422, str(exc), request_id=request_id_of(request.scope), errors=errors or []
    )


async def _on_request_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
        for e in exc.errors()
    ]
    undecodable = next((e for e in errors if e["type"] == "json_invalid"), None)
    if undecodable is not None:  # not JSON at all: the body could not be read (400, as documented)
        position = undecodable["loc"][-1] if len(undecodable["loc"]) > 1 else None
        at = f" at character {position}" if isinstance(position, int) else ""
        return problem_response(
            400,
            f"the body is not valid JSON{at}: {undecodable['msg']}",
            request_id=request_id_of(request.scope),
        )
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(
        422,
        f"the request is not valid: {where}" if where else "the request is not valid",
        request_id=request_id_of(request.scope),
        errors=errors,
    )


async def _on_not_found(request: Request, exc: Exception) -> ProblemResponse:
    return problem_response(404, str(exc), request_id=request_id_of(request.scope))


async def _on_invalid_state(request: Request, exc: Exception) -> ProblemResponse:
    return problem_response(409, str(exc), request_id=request_id_of(request.scope))


async def _on_quota_exceeded(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, QuotaExceededError)
    body = Problem(
        type=TYPE_PREFIX + "quota-exceeded",
        title="Quota exceeded",
        status=429,
        detail=_printable(str(exc)),
        request_id=request_id_of(request.scope),
        quota=exc.quota,
        limit=exc.limit,
    )
    headers = None
    if exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return ProblemResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=429, headers=headers
    )


async def _on_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    rid = request_id_of(request.scope)
    # The message may name hosts and drivers: it goes to the log, not to the client.
    log.warning(
        "backend unavailable during %s %s (request %s): %s",
        request.method,
        request.url.path,
        rid,
        exc,
    )
    return problem_response(
        503,
        "a backing service (database or Redis) did not answer; try again shortly",
        request_id=rid,
        headers={"Retry-After": "5"},
    )


async def _on_http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    return problem_response(
        exc.status_code,
        detail,
        request_id=request_id_of(request.scope),
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer taskrt's errors and FastAPI's own with problem+json."""
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(NotFoundError, _on_not_found)
    app.add_exception_handler(InvalidStateError, _on_invalid_state)
    app.add_exception_handler(QuotaExceededError, _on_quota_exceeded)
    app.add_exception_handler(BackendUnavailableError, _on_unavailable)
    app.add_exception_handler(redis.RedisError, _on_unavailable)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)


class CatchAllMiddleware:
    """Turns any exception nothing else handled into a logged traceback and a bare 500.

    It sits inside Starlette's own error middleware so the exception stops here: the client gets
    the problem shape, never the traceback, and the log gets the traceback once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            rid = request_id_of(scope)
            log.exception(
                "unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), rid
            )
            if started:  # the status line is out; all we can do is end the connection
                raise
            response = problem_response(
                500,
                "an internal error occurred; it has been logged with this request's id",
                request_id=rid,
            )
            await response(scope, receive, send)
