"""``/metrics`` and the middleware that counts and times every HTTP request.

Requests are labelled with the route's path template (``/api/v1/tasks/{task_id}``), never the
raw path, so the number of series stays bounded whatever clients send; paths no route matches
share ``unmatched``, unusual methods share ``OTHER``.

``/metrics`` needs no credentials and has no rate limit: Prometheus scrapes the API directly,
and the nginx in front of the API (config/nginx/nginx.conf) never passes ``/metrics`` on, so it
is not reachable from outside.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskrt import metrics

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def scrape() -> Response:
    """Prometheus metrics of this API (of every server process with ``--workers N``)."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


class MetricsMiddleware:
    """Counts and times each HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer starts: the app raised past every handler

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # the router writes the matched route into this very scope dict
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            metrics.api_request(method, route, status, time.perf_counter() - started)
