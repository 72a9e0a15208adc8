"""Request ids: taken from ``X-Request-ID`` or W3C ``traceparent``, else made up; always returned.

The id travels with the request: it is sent back in ``X-Request-ID``, written into the audit
rows the request causes and stored as the ``trace_id`` of the tasks it creates, so the worker's
log lines for those tasks carry it too.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskrt.logs import current_trace_id

HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
# version 00: 2 hex version, 32 hex trace id, 16 hex parent id, 2 hex flags
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

current_request_id = current_trace_id
"""The id of the request being served: log lines written while serving it carry it as
``trace_id`` (it is :data:`taskrt.logs.current_trace_id`)."""


def request_id_from_headers(headers: dict[str, str]) -> str:
    """The request's id: a well-formed ``X-Request-ID``, else the trace id of a valid
    ``traceparent``, else a new random one. Malformed values are ignored, never echoed."""
    given = headers.get(HEADER, "").strip()
    if _VALID_ID.match(given):
        return given
    match = _TRACEPARENT.match(headers.get("traceparent", "").strip())
    if match and match.group(1) != "ff" and match.group(2) != "0" * 32:
        return match.group(2)
    return uuid.uuid4().hex


def request_id_of(scope: Scope) -> str | None:
    """The id the middleware gave this request (None outside it)."""
    state: dict[str, Any] = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    """Gives every HTTP request an id and returns it in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        request_id = request_id_from_headers(headers)
        # mutate the scope's own state dict: handlers outside this middleware read it too
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
