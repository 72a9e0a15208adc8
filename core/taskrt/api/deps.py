"""What routes depend on: the objects one API process shares, and the caller's identity.

``Caller(Role.PRODUCER)`` is the dependency a route declares to say which role it needs; it
authenticates, rate-limits and checks the role, in that order, resolves the tenant the request
acts in, and hands the route a :class:`CallerInfo` that turns into the audit log's
:class:`~taskrt.store.Actor`. Routers built with ``route_class=AuthFirstRoute`` do all that
before the request body is read.

Routes reach tasks and schedules only through the caller's tenant scope: the :data:`Tasks`
dependency (``service.scoped(caller.tenant)``), never the service itself, so another tenant's
objects are "not found" (404, the same answer as an id that never existed).
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
from taskrt.exceptions import UnknownTenantError, ValidationError
from taskrt.records import DEFAULT_TENANT, Actor
from taskrt.runtime import Runtime
from taskrt.schedule_service import ScheduleService, TenantSchedules
from taskrt.service import TaskService, TenantTasks
from taskrt.settings import Settings
from taskrt.store import Store

# Declared so the OpenAPI document lists both ways to authenticate; the auth chain reads the
# raw headers itself (a backend may look at any header).
_bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="An API key or a JWT.")
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="An API key."
)

TENANT_HEADER = "X-Taskrt-Tenant"
"""The header an operator sends to act in another tenant than its credential's."""


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

    @property
    def store(self) -> Store:
        """The store, for what is no tenant's data (the readiness probe) or takes its
        tenant explicitly (pruning); routes reach tasks through :data:`Tasks`."""
        return self.service.store


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
    tenant: str = DEFAULT_TENANT
    """The tenant this request acts in: the credential's, or the one an operator chose."""
    chosen: bool = False
    """Whether an operator chose :attr:`tenant` with the ``X-Taskrt-Tenant`` header."""

    @property
    def actor(self) -> Actor:
        """The audit-log actor for changes this request makes (in the acting tenant)."""
        return Actor(actor_name(self.identity), self.request_id, self.client_ip, self.tenant)

    @property
    def every_tenant(self) -> bool:
        """Whether the request speaks for every tenant: an operator that chose none (its
        prune and its worker listing then cover every tenant)."""
        return self.identity.operator and not self.chosen


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
        caller = await run_in_threadpool(admit, request, self.role)
        setattr(request.state, CALLER_STATE, caller)
        return caller


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
    tenant, chosen = acting_tenant(state, identity, request.headers.get(TENANT_HEADER))
    return CallerInfo(identity, request_id_of(request.scope), client_ip, tenant, chosen)


def acting_tenant(state: ApiState, identity: Identity, asked: str | None) -> tuple[str, bool]:
    """The tenant a request acts in, and whether the header chose it: the credential's
    tenant; an operator may name another with ``X-Taskrt-Tenant`` (404 for a tenant that does
    not exist). Anyone else naming another tenant gets 403: the credentials are bound to
    theirs (which the caller knows already, so this discloses nothing)."""
    if asked is None:
        return identity.tenant, False
    asked = asked.strip()
    if not identity.operator:
        if asked == identity.tenant:
            return asked, False
        raise HTTPException(
            403,
            f"credentials are bound to tenant {identity.tenant!r}; {TENANT_HEADER} cannot "
            "choose another (only an operator may)",
        )
    try:
        return state.service.check_tenant(asked), True
    except ValidationError as exc:
        raise HTTPException(400, f"{TENANT_HEADER}: {exc}") from None
    except UnknownTenantError:
        raise HTTPException(404, f"tenant not found: {asked!r}") from None


def caller_of(request: Request) -> CallerInfo:
    """The :class:`CallerInfo` the route's :class:`Caller` established for ``request``."""
    caller: CallerInfo | None = getattr(request.state, CALLER_STATE, None)
    if caller is None:  # a route scoping without declaring its role: a bug, caught in tests
        raise RuntimeError("a route using Tasks or Schedules must declare a Caller")
    return caller


async def tasks_of(request: Request) -> TenantTasks:
    """Dependency: the task service bound to the caller's tenant (the only way routes reach
    tasks). The tenant was checked when the caller was admitted."""
    caller = caller_of(request)
    operator = caller.identity.operator
    return state_of(request).service.scoped(caller.tenant, operator=operator, check=False)


async def schedules_of(request: Request) -> TenantSchedules:
    """Dependency: the schedule service bound to the caller's tenant (cheap: a few
    references; the tenant was checked when the caller was admitted)."""
    caller = caller_of(request)
    return ScheduleService(state_of(request).service).scoped(caller.tenant, check=False)


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
Tasks = Annotated[TenantTasks, Depends(tasks_of)]
Schedules = Annotated[TenantSchedules, Depends(schedules_of)]
