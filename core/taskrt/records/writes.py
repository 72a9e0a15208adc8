"""Records of writes: a validated task to store, what storing it did, and who made a change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskrt.records.queue import DispatchEntry
from taskrt.records.tenancy import DEFAULT_TENANT
from taskrt.records.views import TaskKind


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is making a change, and from where (request id and client IP for HTTP calls)."""

    name: str
    request_id: str | None = None
    client_ip: str | None = None
    tenant: str = DEFAULT_TENANT
    """The tenant the change is made in; audit rows are stamped with it."""


@dataclass(slots=True)
class TaskInsert:
    """A validated task ready to be stored (ids made by the producer)."""

    id: uuid.UUID
    run_id: uuid.UUID
    name: str
    queue: str
    payload: Any
    max_retries: int
    retry: str
    retry_params: dict[str, Any]
    timeout: float | None = None
    priority: int = 0
    dedup_key: str | None = None
    trace_id: str | None = None
    delay: float = 0.0
    run_at: datetime | None = None
    kind: TaskKind = TaskKind.IMMEDIATE
    tenant: str = DEFAULT_TENANT


@dataclass(slots=True)
class Enqueued:
    """The outcome of storing one :class:`TaskInsert`."""

    task_id: uuid.UUID
    created: bool
    dispatch: DispatchEntry | None = None
