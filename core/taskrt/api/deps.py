"""What routes depend on: the objects one API process shares, and the caller's identity.

``Caller(Role.PRODUCER)`` is the dependency a route declares to say which role it needs; it
authenticates, rate-limits and checks the role, in that order, and hands the route a
:class:`CallerInfo` that turns into the audit log's :class:`~taskrt.store.Actor`. Routers built
with ``route_class=AuthFirstRoute`` do all that before the request body is read.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from taskrt.api.ratelimit import RateLimiter
from taskrt.api.request_ids import request_id_of
from taskrt.api.security import AuthChain, actor_name, credentials_from, require_role
from taskrt.auth import Identity, Role
from taskrt.records import Actor
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import Settings

# Declared so the OpenAPI document lists both ways to authenticate; the auth chain reads the
# raw headers itself (a backend may look at any header).
_bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="An API key or a JWT.")
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="An API key."
)


@dataclass
class ApiState:
    """Everything one API process shares between requests."""

    runtime: Runtime
    service: TaskService
    auth: AuthChain
    limiter: RateLimiter

    @property
    def settings(self) -> Settings:
        """The process's settings."""
        return self.runtime.settings


def state_of(request: Request) -> ApiState:
    """The :class:`ApiState` of the app serving ``request``."""
    state: ApiState = request.app.state.taskrt
    return state


async def api_state(request: Request) -> ApiState:
    """:func:`state_of` as a dependency (``async``: it touches nothing, so it runs on the
    event loop instead of costing a thread-pool hop)."""
    return state_of(request)


@dataclass(frozen=True, slots=True)
class CallerInfo:
    """Who called, with the request's id and address, as routes need them."""

    identity: Identity
    request_id: str | None
    client_ip: str | None

    @property
    def actor(self) -> Actor:
        """The audit-log actor for changes this request makes."""
        return Actor(actor_name(self.identity), self.request_id, self.client_ip)


class Caller:
    """Dependency: authenticate, rate-limit, then require ``role``.

    On an :class:`AuthFirstRoute` this has been done before the body was read, and the
    dependency only hands over the result.
    """

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(
        self,
        request: Request,
        _bearer_token: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        _api_key_header: Annotated[str | None, Security(_api_key)],
    ) -> CallerInfo:
        done: CallerInfo | None = getattr(request.state, CALLER_STATE, None)
        if done is not None:
            return done
        return await run_in_threadpool(admit, request, self.role)


CALLER_STATE = "taskrt_caller"


def admit(request: Request, role: Role) -> CallerInfo:
    """Authenticate the caller of ``request``, rate-limit it, then require ``role``: 401, 429
    or 403 as HTTPException, in that order. Blocking (the auth chain may read the database)."""
    state = state_of(request)
    client_ip = request.client.host if request.client else None
    try:
        identity = state.auth.authenticate(credentials_from(request.headers, client_ip))
    except HTTPException:
        state.limiter.check(None, client_ip)  # failed attempts count against the address
        raise
    state.limiter.check(identity, client_ip)
    require_role(identity, role)
    return CallerInfo(identity, request_id_of(request.scope), client_ip)


class AuthFirstRoute(APIRoute):
    """A route that authenticates, rate-limits and checks the role of its caller before
    FastAPI reads and validates the body: an anonymous client sending malformed bodies gets
    401 (or 429), never a 400 or 422 that would tell it about the API and cost a parse."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role = _role_needed(self.dependant)
        if role is None:
            return handler

        async def guarded(request: Request) -> Response:
            caller = await run_in_threadpool(admit, request, role)
            setattr(request.state, CALLER_STATE, caller)
            return await handler(request)

        return guarded


def _role_needed(dependant: Dependant) -> Role | None:
    """The role of the :class:`Caller` among ``dependant``'s dependencies, if any."""
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Caller):
            return dependency.call.role
        found = _role_needed(dependency)
        if found is not None:
            return found
    return None


ReaderCaller = Annotated[CallerInfo, Depends(Caller(Role.READER))]
ProducerCaller = Annotated[CallerInfo, Depends(Caller(Role.PRODUCER))]
AdminCaller = Annotated[CallerInfo, Depends(Caller(Role.ADMIN))]
State = Annotated[ApiState, Depends(api_state)]
