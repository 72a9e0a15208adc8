"""Tenants and queue addresses: the one name the queue layer uses for a (tenant, queue) pair.

A queue belongs to a tenant. The queue backends, the Redis index, maintenance and the fetcher
refer to the pair by an *address*: the default tenant's address is the bare queue name (so its
Redis keys, channels and registry entries are exactly those of a single-tenant deployment), any
other tenant's is ``tenant/queue``. Neither queue names nor tenant names may contain ``/``
(:mod:`taskrt.limits`), so :func:`split_address` always undoes :func:`address`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DEFAULT_TENANT = "default"
"""The tenant of every row written without one: single-tenant deployments use only this."""

_SEPARATOR = "/"


def address(tenant: str, queue: str) -> str:
    """The address of ``queue`` of ``tenant``: the bare name for the default tenant,
    ``tenant/queue`` otherwise."""
    return queue if tenant == DEFAULT_TENANT else f"{tenant}{_SEPARATOR}{queue}"


def split_address(addr: str) -> tuple[str, str]:
    """``(tenant, queue)`` of an address; an address without ``/`` is the default tenant's."""
    tenant, sep, queue = addr.partition(_SEPARATOR)
    if not sep:
        return DEFAULT_TENANT, addr
    return tenant, queue


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant: its fair-dequeue weight and quotas (None means unlimited)."""

    name: str
    weight: int
    max_queued: int | None
    enqueue_rate: str | None
    """``"600/minute"`` and the like; None means no rate quota."""
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "weight": self.weight,
            "max_queued": self.max_queued,
            "enqueue_rate": self.enqueue_rate,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
