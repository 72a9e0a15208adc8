"""Building the FastAPI application.

:func:`create_app` wires routes, middleware and error handlers around a runtime and a
:class:`~taskrt.service.TaskService` that the caller built (tests build their own);
:func:`create_app_from_settings` builds those from the environment (through
:class:`~taskrt.app.App`, the one wiring point) and is the factory
``taskrt api`` gives uvicorn (``uvicorn --factory taskrt.api.app:create_app_from_settings``).

Middleware, outermost first: metrics (so every answer is counted and timed), request ids (so
every answer carries one), the catch-all 500 (so no traceback ever leaves), the body limit, then
FastAPI's own error handlers and the routes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI

from taskrt import logs, metrics
from taskrt._version import __version__
from taskrt.api.deps import ApiState
from taskrt.api.docs_ui import install_docs
from taskrt.api.errors import CatchAllMiddleware, install_error_handlers
from taskrt.api.limits import BodyLimitMiddleware
from taskrt.api.metrics import MetricsMiddleware
from taskrt.api.metrics import router as metrics_router
from taskrt.api.openapi import build_openapi
from taskrt.api.ratelimit import RateLimiter
from taskrt.api.request_ids import RequestIdMiddleware
from taskrt.api.routes_admin import probes
from taskrt.api.routes_admin import router as admin_router
from taskrt.api.routes_queues import router as queues_router
from taskrt.api.routes_schedules import router as schedules_router
from taskrt.api.routes_tasks import router as tasks_router
from taskrt.api.routes_tenants import router as tenants_router
from taskrt.api.security import AuthChain
from taskrt.api.server import NoDelayH11Protocol
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import Settings

log = logging.getLogger("taskrt.api")

DESCRIPTION = """\
Create, inspect and cancel tasks, watch queues and workers, replay dead letters, manage cron
schedules and read the audit log. Every route under `/api/v1` needs credentials
(`Authorization: Bearer <token>` or `X-API-Key`) and a role: `reader` may read, `producer` may
also create and cancel tasks, `admin` may do everything. Errors are `application/problem+json`.
Every answer carries `X-Request-ID`.
"""


def _build(max_body_bytes: int, lifespan: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    app = FastAPI(
        title="taskrt",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from installed assets rather than a CDN
        redoc_url=None,
        openapi_tags=[
            {"name": "tasks", "description": "Create, read, list and cancel tasks."},
            {"name": "queues", "description": "Queue sizes, pause and resume, dead letters."},
            {
                "name": "schedules",
                "description": "Cron schedules: create, change, delete, fires, preview.",
            },
            {"name": "admin", "description": "Workers and the audit log."},
            {"name": "tenants", "description": "Tenants, their weights and quotas (operators)."},
            {"name": "health", "description": "Probes for load balancers and orchestrators."},
        ],
    )
    app.include_router(tasks_router)
    app.include_router(queues_router)
    app.include_router(schedules_router)
    app.include_router(admin_router)
    app.include_router(tenants_router)
    app.include_router(probes)
    app.include_router(metrics_router)
    install_docs(app)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, built without connecting to anything (for the generated docs)."""
    default_limit: int = Settings.model_fields["api_max_body_bytes"].default
    return _build(default_limit).openapi()


def create_app(
    runtime: Runtime,
    service: TaskService,
    *,
    limiter: RateLimiter | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The HTTP API over ``service``. Builds the auth chain (ConfigurationError if it is
    misconfigured) and the rate limiter; ``on_shutdown`` runs when the server stops."""
    settings = runtime.settings
    auth = AuthChain.from_settings(settings, runtime.registry, service.store)
    if auth.disabled:
        log.warning(
            "AUTHENTICATION IS DISABLED (TASKRT_AUTH_DISABLED=true): every HTTP request acts "
            "as an anonymous admin. Never run like this where anyone else can connect."
        )
    else:
        log.info("HTTP API auth backends: %s", ", ".join(name for name, _ in auth.backends))
    limiter = limiter if limiter is not None else RateLimiter.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        limiter.close()
        if on_shutdown is not None:
            on_shutdown()

    app = _build(settings.api_max_body_bytes, lifespan)
    app.state.taskrt = ApiState(runtime=runtime, service=service, auth=auth, limiter=limiter)
    metrics.watch_queues(partial(service.queues, tenant=None))  # every tenant's queues
    return app


def create_app_from_settings() -> FastAPI:
    """The app on the settings of the environment (``TASKRT_*``, ``TASKRT_CONFIG``)."""
    from taskrt.app import App
    from taskrt.settings import load_settings

    settings = load_settings()
    # a uvicorn server process of `--workers N` starts with no logging set up
    logs.configure_logging(settings, "api")
    NoDelayH11Protocol.configure(settings)  # before this process accepts a connection
    wired = App.open(settings)
    return create_app(wired.runtime, wired.service, on_shutdown=wired.close)
