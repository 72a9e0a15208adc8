"""What routes depend on: the objects one API process shares, and the caller's identity.

``Caller(Role.PRODUCER)`` is the dependency a route declares to say which role it needs; it
authenticates, rate-limits and checks the role, in that order, and hands the route a
:class:`CallerInfo` that turns into the audit log's :class:`~taskrt.store.Actor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from taskrt.api.ratelimit import RateLimiter
from taskrt.api.request_ids import request_id_of
from taskrt.api.security import AuthChain, actor_name, credentials_from, require_role
from taskrt.auth import Identity, Role
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import Settings
from taskrt.store import Actor

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
    """Dependency: authenticate, rate-limit, then require ``role``."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(
        self,
        request: Request,
        _bearer_token: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        _api_key_header: Annotated[str | None, Security(_api_key)],
    ) -> CallerInfo:
        state = state_of(request)
        client_ip = request.client.host if request.client else None
        try:
            identity = state.auth.authenticate(credentials_from(request.headers, client_ip))
        except HTTPException:
            state.limiter.check(None, client_ip)  # failed attempts count against the address
            raise
        state.limiter.check(identity, client_ip)
        require_role(identity, self.role)
        return CallerInfo(identity, request_id_of(request.scope), client_ip)


ReaderCaller = Annotated[CallerInfo, Depends(Caller(Role.READER))]
ProducerCaller = Annotated[CallerInfo, Depends(Caller(Role.PRODUCER))]
AdminCaller = Annotated[CallerInfo, Depends(Caller(Role.ADMIN))]
State = Annotated[ApiState, Depends(api_state)]
