"""Plain, immutable views of tasks, runs and workers, as the client, the API and hooks see them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from taskrt.records.tenancy import DEFAULT_TENANT


class TaskStatus(StrEnum):
    """Where a task stands. ``pending`` is reserved for tasks not placed in a queue (templates)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and cancelled."""
        return self in TERMINAL_TASK_STATUSES


TERMINAL_TASK_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
LIVE_TASK_STATUSES = ("pending", "queued", "running", "retrying")
FINISHED_TASK_STATUSES = ("completed", "failed", "cancelled")
"""The terminal statuses as plain strings: the only ones with a finish time, and the only
ones pruning touches."""


class RunStatus(StrEnum):
    """Where one attempt stands."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    CANCELLED = "cancelled"


LIVE_RUN_STATUSES = ("queued", "running")


class TaskKind(StrEnum):
    """The seed's task types: a task to run, or the template a schedule fires."""

    IMMEDIATE = "immediate"
    SCHEDULED = "scheduled"


class WorkerStatus(StrEnum):
    """A worker's registry state."""

    ONLINE = "online"
    DRAINING = "draining"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One attempt of a task."""

    id: uuid.UUID
    task_id: uuid.UUID
    attempt: int
    status: RunStatus
    queue: str
    available_at: datetime
    enqueued_at: datetime
    worker_id: uuid.UUID | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    outcome_reason: str | None = None
    next_retry_at: datetime | None = None
    tenant: str = DEFAULT_TENANT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return cast(dict[str, Any], _jsonable(self))


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task and, when asked for, its runs (oldest first)."""

    id: uuid.UUID
    name: str
    kind: TaskKind
    queue: str
    priority: int
    payload: Any
    status: TaskStatus
    max_retries: int
    retry: str
    retry_params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    dedup_key: str | None = None
    timeout: float | None = None
    trace_id: str | None = None
    failure_reason: str | None = None
    lost_runs: int = 0
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    runs: tuple[RunRecord, ...] = field(default=())
    tenant: str = DEFAULT_TENANT

    @property
    def latest_run(self) -> RunRecord | None:
        """The newest run, if runs were loaded."""
        return self.runs[-1] if self.runs else None

    @property
    def result(self) -> Any:
        """What the handler returned, once the task has completed (its succeeded run's result);
        None before that, and for a task that failed or was cancelled."""
        if self.status is not TaskStatus.COMPLETED:
            return None
        for run in reversed(self.runs):
            if run.status is RunStatus.SUCCEEDED:
                return run.result
        return None

    def to_dict(self, *, runs: bool = True) -> dict[str, Any]:
        """JSON-ready form; ``runs=False`` leaves the runs out."""
        data = cast(dict[str, Any], _jsonable(self))
        if not runs:
            data.pop("runs", None)
        return data


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """A validated request to create a task, as ``before_enqueue`` observers see it."""

    name: str
    payload: Any
    queue: str
    available_at: datetime | None
    dedup_key: str | None
    max_retries: int
    retry: str
    retry_params: dict[str, Any]
    timeout: float | None
    priority: int
    trace_id: str | None = None
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A failed or lost run was followed by a new attempt."""

    task_id: uuid.UUID
    task_name: str
    queue: str
    failed_run_id: uuid.UUID
    attempt: int
    next_run_id: uuid.UUID
    delay: float
    reason: str
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterEvent:
    """A task gave up and was put in its queue's dead-letter queue."""

    task_id: uuid.UUID
    task_name: str
    queue: str
    run_id: uuid.UUID
    attempt: int
    reason: str
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """How one run of a handler ended, as ``after_execute`` observers see it."""

    status: RunStatus
    duration: float
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process, as lifecycle hooks and the registry see it."""

    id: uuid.UUID
    name: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    version: str
    status: WorkerStatus = WorkerStatus.ONLINE
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    tenant: str = DEFAULT_TENANT
    """The tenant served, or ``*`` for a worker serving several tenants."""
    tenants: tuple[str, ...] | None = None
    """The tenants a ``*`` worker serves (None: one tenant, or all of them)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return cast(dict[str, Any], _jsonable(self))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {name: _jsonable(getattr(obj, name)) for name in obj.__dataclass_fields__}
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, StrEnum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [_jsonable(item) for item in obj]
    if isinstance(obj, dict):
        return {key: _jsonable(value) for key, value in obj.items()}
    return obj


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A cron schedule and the task template it fires."""

    id: uuid.UUID
    name: str | None
    cron: str
    timezone: str
    enabled: bool
    misfire_policy: str
    task_template_id: uuid.UUID
    task_name: str
    payload: Any
    queue: str
    max_retries: int
    retry: str
    retry_params: dict[str, Any]
    timeout: float | None
    priority: int
    created_at: datetime
    updated_at: datetime
    last_triggered_at: datetime | None = None
    next_fire_at: datetime | None = None
    tenant: str = DEFAULT_TENANT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return cast(dict[str, Any], _jsonable(self))


@dataclass(frozen=True, slots=True)
class ScheduleFire:
    """A slot of a schedule fired and created a task, as ``on_schedule_fired`` observers see it."""

    schedule_id: uuid.UUID
    fire_at: datetime
    """The slot's due time (UTC)."""
    task_id: uuid.UUID
    task_name: str
    queue: str
    lag: float
    """Seconds from the slot's due time to the fire (database clock)."""
    tenant: str = DEFAULT_TENANT
    """The schedule's tenant (the task was created in it)."""


@dataclass(frozen=True, slots=True)
class FireRecord:
    """One fired slot of a schedule and the task it created."""

    id: int
    schedule_id: uuid.UUID
    fire_at: datetime
    task_id: uuid.UUID | None
    created_at: datetime

    @property
    def lag(self) -> float:
        """Seconds from the slot's due time to the task's creation (database clock)."""
        return (self.created_at - self.fire_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the lag."""
        return {**cast(dict[str, Any], _jsonable(self)), "lag_seconds": self.lag}
