"""Managing tenants: ``/api/v1/tenants`` (the operator role only; every change audited).

Operators are cross-tenant: these routes name the tenant in the path, never through the
caller's own tenant. Any other role gets 403, a problem about the role, not about a tenant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from taskrt.api.deps import AuthFirstRoute, Caller, CallerInfo, State
from taskrt.api.errors import locate
from taskrt.api.openapi import CONFLICT, NOT_FOUND, PROBLEMS, role_doc
from taskrt.api.tenant_schemas import (
    TenantCreate,
    TenantList,
    TenantName,
    TenantOut,
    TenantUpdate,
)
from taskrt.auth import Role
from taskrt.exceptions import ValidationError
from taskrt.tenants import TenantService

router = APIRouter(
    prefix="/api/v1/tenants", tags=["tenants"], responses=PROBLEMS, route_class=AuthFirstRoute
)

OperatorCaller = Annotated[CallerInfo, Depends(Caller(Role.OPERATOR))]
NamePath = Annotated[TenantName, Path(description="The tenant's name.")]


def _tenants(state: State) -> TenantService:
    return TenantService(state.service.store)


Tenants = Annotated[TenantService, Depends(_tenants)]


@router.post(
    "",
    response_model=TenantOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a tenant",
    responses=CONFLICT,
    openapi_extra=role_doc(Role.OPERATOR),
)
def create_tenant(body: TenantCreate, caller: OperatorCaller, tenants: Tenants) -> TenantOut:
    """A new tenant with its weight and quotas, like `taskrt tenants create`; audited as
    `tenant.create`. 409 if the name is taken."""
    try:
        tenants.create(
            body.name,
            weight=body.weight,
            max_queued=body.max_queued,
            enqueue_rate=body.enqueue_rate,
            actor=caller.actor,
        )
    except ValidationError as exc:
        raise locate(exc, "body") from None
    return TenantOut.of(tenants.usage_of(body.name))


@router.get(
    "",
    response_model=TenantList,
    summary="List tenants",
    openapi_extra=role_doc(Role.OPERATOR),
)
def list_tenants(caller: OperatorCaller, tenants: Tenants) -> TenantList:
    """Every tenant by name, with its weight, quotas and count of tasks waiting to run."""
    return TenantList(items=[TenantOut.of(u) for u in tenants.usage()])


@router.get(
    "/{name}",
    response_model=TenantOut,
    summary="Read a tenant",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.OPERATOR),
)
def get_tenant(name: NamePath, caller: OperatorCaller, tenants: Tenants) -> TenantOut:
    """One tenant with its weight, quotas and count of tasks waiting to run."""
    return TenantOut.of(tenants.usage_of(name))


@router.patch(
    "/{name}",
    response_model=TenantOut,
    summary="Change a tenant",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.OPERATOR),
)
def update_tenant(
    name: NamePath, body: TenantUpdate, caller: OperatorCaller, tenants: Tenants
) -> TenantOut:
    """Change the fields given (at least one); `null` clears a quota. Every API process and
    worker sees the change within a few seconds. Audited as `tenant.update`."""
    changes = body.changes()
    if not changes:
        raise locate(
            ValidationError("give at least one of weight, max_queued, enqueue_rate"), "body"
        )
    try:
        tenants.update(name, changes, actor=caller.actor)
    except ValidationError as exc:
        raise locate(exc, "body") from None
    return TenantOut.of(tenants.usage_of(name))


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a tenant",
    response_description="The tenant is gone.",
    responses={**NOT_FOUND, **CONFLICT},
    openapi_extra=role_doc(Role.OPERATOR),
)
def delete_tenant(name: NamePath, caller: OperatorCaller, tenants: Tenants) -> Response:
    """Delete a tenant with its queue state and revoked API keys; audited as `tenant.delete`.
    409 for `default`, and while the tenant still holds tasks (of any status), schedules or
    API keys not revoked: nothing is deleted then."""
    tenants.delete(name, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
