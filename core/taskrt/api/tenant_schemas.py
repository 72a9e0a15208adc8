"""Request and response bodies of the tenant routes (``/api/v1/tenants``, operators only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from taskrt import limits
from taskrt.tenants import MAX_QUEUED_LIMIT, TenantUsage

TenantName = Annotated[
    str,
    StringConstraints(max_length=limits.TENANT_NAME_MAX, pattern=limits.TENANT_NAME_PATTERN),
]
Weight = Annotated[
    int,
    Field(
        ge=1,
        le=limits.TENANT_WEIGHT_MAX,
        description="Share of fair dequeue: a tenant of weight 3 gets 3 turns to another's 1.",
    ),
]
MaxQueued = Annotated[
    int | None,
    Field(
        ge=0,
        le=MAX_QUEUED_LIMIT,
        description="Most tasks waiting to run (queued, delayed or retrying); null: no limit.",
    ),
]
EnqueueRate = Annotated[
    str | None,
    Field(
        max_length=32,
        description="Most tasks created per period, `N/second`, `N/minute` or `N/hour` "
        "(e.g. `600/minute`); null: no limit.",
    ),
]


class TenantCreate(BaseModel):
    """A new tenant; its quotas default to none (unlimited)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "acme", "weight": 2, "max_queued": 10000}],
        },
    )

    name: TenantName = Field(
        description="Lower-case letters, digits, `_` and `-`; starts with a letter or digit."
    )
    weight: Weight = 1
    max_queued: MaxQueued = None
    enqueue_rate: EnqueueRate = None


class TenantUpdate(BaseModel):
    """The settings to change (at least one); `null` clears a quota."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"max_queued": None, "enqueue_rate": "100/second"}]},
    )

    weight: Weight | None = None
    max_queued: MaxQueued = None
    enqueue_rate: EnqueueRate = None

    def changes(self) -> dict[str, Any]:
        """The fields given (a `null` quota included: it clears the quota)."""
        return self.model_dump(exclude_unset=True)


class TenantOut(BaseModel):
    """A tenant, its weight and quotas, and how many of its tasks wait to run now."""

    name: str
    weight: int
    max_queued: int | None
    enqueue_rate: str | None
    queued: int = Field(description="Tasks waiting to run now (what `max_queued` counts).")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, usage: TenantUsage) -> TenantOut:
        """From the tenants service's view."""
        t = usage.tenant
        return cls(
            name=t.name,
            weight=t.weight,
            max_queued=t.max_queued,
            enqueue_rate=t.enqueue_rate,
            queued=usage.queued,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )


class TenantList(BaseModel):
    """Every tenant, by name."""

    items: list[TenantOut]
