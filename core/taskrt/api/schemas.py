"""Request and response bodies of the HTTP API (pydantic models, so they are the OpenAPI schemas).

Strings that reach PostgreSQL are constrained here (no NUL characters, bounded lengths) because
PostgreSQL refuses NUL in text and JSONB; refusing them up front turns what would be a database
error into a 422 that names the field.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from taskrt import jsonlimits, limits
from taskrt.records import (
    RunRecord,
    RunStatus,
    TaskKind,
    TaskRecord,
    TaskStatus,
    WorkerInfo,
)
from taskrt.store.audit import AuditRecord

# Every bound below comes from taskrt.limits, where the service reads it too.
MAX_BATCH = limits.HTTP_BATCH_MAX
MAX_DELAY_SECONDS = limits.REQUEST_SECONDS_MAX

TaskName = Annotated[
    str, StringConstraints(max_length=limits.TASK_NAME_MAX, pattern=limits.TASK_NAME_PATTERN)
]
QueueName = Annotated[str, StringConstraints(pattern=limits.QUEUE_NAME_PATTERN)]
PlainText = Annotated[
    str, StringConstraints(min_length=1, max_length=limits.LABEL_MAX, pattern=r"^[^\x00]+$")
]
StrategyName = Annotated[str, StringConstraints(pattern=limits.STRATEGY_NAME_PATTERN)]

# --- the task options a task, a schedule and a schedule update share -------------------------

RetryCount = Annotated[int, Field(ge=0, le=limits.MAX_RETRIES_LIMIT)]
PriorityNumber = Annotated[int, Field(ge=limits.PRIORITY_MIN, le=limits.PRIORITY_MAX)]
MaxRetries = Annotated[RetryCount | None, Field(description="Retries after the first attempt.")]
RetryName = Annotated[StrategyName | None, Field(description="Retry strategy name.")]
RetryParams = Annotated[
    dict[str, Any] | None, Field(description="Parameters of the retry strategy.")
]
AttemptTimeout = Annotated[
    float | None, Field(gt=0, le=MAX_DELAY_SECONDS, description="Seconds one attempt may take.")
]


# --- problems -------------------------------------------------------------------------------


class ProblemError(BaseModel):
    """One problem with the request: where (``loc``, a field path) and what (``msg``)."""

    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """Every error answer (``application/problem+json``, RFC 9457)."""

    type: str = Field(description="URI naming the kind of problem (`urn:taskrt:problem:<kind>`).")
    title: str = Field(description="The HTTP status phrase.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong, for a person.")
    request_id: str | None = Field(default=None, description="The request's id (X-Request-ID).")
    errors: list[ProblemError] | None = Field(
        default=None, description="For validation errors: every problem with its field path."
    )
    quota: str | None = Field(
        default=None,
        description="For `quota-exceeded`: the tenant's quota that refused, `max-queued` or "
        "`enqueue-rate`.",
    )
    limit: int | str | None = Field(
        default=None, description="For `quota-exceeded`: that quota's configured value."
    )


# --- tasks ----------------------------------------------------------------------------------


class TaskCreate(BaseModel):
    """A task to create. Anything left out comes from the task type's defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "example.echo", "payload": {"hello": "world"}},
                {"name": "example.echo", "payload": [1, 2], "queue": "high", "delay": 30},
            ]
        },
    )

    name: TaskName = Field(description="The task type (`example.echo`); selects the handler.")
    payload: Any = Field(default=None, description="JSON payload, validated by the task type.")
    queue: QueueName | None = Field(default=None, description="Queue to put the task in.")
    delay: float | None = Field(
        default=None,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="Seconds to wait before the task may start (not with `run_at`).",
    )
    run_at: AwareDatetime | None = Field(
        default=None, description="When the task may start, with a time zone (not with `delay`)."
    )
    dedup_key: PlainText | None = Field(
        default=None,
        description=(
            "While a live task of this type holds the key, the same request returns that task "
            "(200) instead of creating one. The `Idempotency-Key` header sets it too."
        ),
    )
    max_retries: MaxRetries = None
    retry: RetryName = None
    retry_params: RetryParams = None
    timeout: AttemptTimeout = None
    priority: PriorityNumber | None = Field(
        default=None, description="Priority number stored with the task."
    )


class TaskBatchCreate(BaseModel):
    """Up to 1,000 tasks created in one transaction: all of them or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"tasks": [{"name": "example.echo"}, {"name": "example.echo"}]}]
        },
    )

    tasks: list[TaskCreate] = Field(min_length=1, max_length=MAX_BATCH)


class RunOut(BaseModel):
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
    outcome_reason: str | None = None
    next_retry_at: datetime | None = None

    @classmethod
    def of(cls, run: RunRecord) -> RunOut:
        """The response form of ``run`` (the handler's traceback stays out: see the docs)."""
        return cls(
            id=run.id,
            task_id=run.task_id,
            attempt=run.attempt,
            status=run.status,
            queue=run.queue,
            available_at=run.available_at,
            enqueued_at=run.enqueued_at,
            worker_id=run.worker_id,
            started_at=run.started_at,
            finished_at=run.finished_at,
            result=run.result,
            error_type=run.error_type,
            error_message=run.error_message,
            outcome_reason=run.outcome_reason,
            next_retry_at=run.next_retry_at,
        )


class TaskOut(BaseModel):
    """A task with its latest run."""

    id: uuid.UUID
    name: str
    kind: TaskKind
    queue: str
    priority: int
    payload: Any = None
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
    latest_run: RunOut | None = None

    @classmethod
    def of(cls, task: TaskRecord, latest: RunRecord | None = None) -> TaskOut:
        """The response form of ``task`` with ``latest`` (default: its last loaded run)."""
        run = latest if latest is not None else task.latest_run
        return cls(
            id=task.id,
            name=task.name,
            kind=task.kind,
            queue=task.queue,
            priority=task.priority,
            payload=task.payload,
            status=task.status,
            max_retries=task.max_retries,
            retry=task.retry,
            retry_params=task.retry_params,
            created_at=task.created_at,
            updated_at=task.updated_at,
            dedup_key=task.dedup_key,
            timeout=task.timeout,
            trace_id=task.trace_id,
            failure_reason=task.failure_reason,
            lost_runs=task.lost_runs,
            finished_at=task.finished_at,
            cancel_requested_at=task.cancel_requested_at,
            latest_run=RunOut.of(run) if run is not None else None,
        )


class TaskPage(BaseModel):
    """One page of tasks, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[TaskOut]
    next_cursor: str | None = None


class RunList(BaseModel):
    """Every run of a task, oldest first."""

    items: list[RunOut]


class BatchItemOut(BaseModel):
    """What happened to one task of a batch."""

    id: uuid.UUID
    created: bool = Field(description="False when a live task with the dedup key was returned.")
    name: str
    queue: str


class BatchOut(BaseModel):
    """The tasks of a batch, in request order."""

    items: list[BatchItemOut]


# --- queues ---------------------------------------------------------------------------------


class QueueOut(BaseModel):
    """Sizes and state of one queue."""

    name: str
    ready: int
    delayed: int
    inflight: int
    dlq: int
    paused: bool


class QueueList(BaseModel):
    """Every known queue."""

    items: list[QueueOut]


class QueueStateOut(BaseModel):
    """A queue's paused state after a pause or resume."""

    name: str
    paused: bool


class ReplayRequest(BaseModel):
    """Which dead-lettered tasks to replay: ``task_ids``, or ``all: true``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"all": True}]})

    task_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)
    all: Literal[True] | None = Field(default=None, description="Replay every dead letter.")


class ReplayOut(BaseModel):
    """Replayed tasks, and the ones skipped because they are not dead-lettered in that queue."""

    replayed: list[uuid.UUID]
    skipped: list[uuid.UUID]


# --- workers, audit, health -----------------------------------------------------------------


class WorkerOut(BaseModel):
    """A registered worker process."""

    id: uuid.UUID
    name: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    version: str
    status: str
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None

    @classmethod
    def of(cls, worker: WorkerInfo) -> WorkerOut:
        """The response form of ``worker``."""
        return cls(
            id=worker.id,
            name=worker.name,
            hostname=worker.hostname,
            pid=worker.pid,
            queues=list(worker.queues),
            concurrency=worker.concurrency,
            version=worker.version,
            status=worker.status.value,
            started_at=worker.started_at,
            heartbeat_at=worker.heartbeat_at,
        )


class WorkerList(BaseModel):
    """Registered workers, most recently started first."""

    items: list[WorkerOut]


class AuditOut(BaseModel):
    """One audit-log row."""

    id: int
    created_at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None = None
    request_id: str | None = None
    client_ip: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, row: AuditRecord) -> AuditOut:
        """The response form of ``row``."""
        return cls(
            id=row.id,
            created_at=row.created_at,
            actor=row.actor,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            request_id=row.request_id,
            client_ip=row.client_ip,
            details=row.details,
        )


class AuditPage(BaseModel):
    """One page of the audit log, newest first."""

    items: list[AuditOut]
    next_cursor: str | None = None


class Health(BaseModel):
    """``/healthz``: the process answers."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """``/readyz``: what each dependency said."""

    status: Literal["ready"] = "ready"
    checks: dict[str, str]


# --- payload hygiene ------------------------------------------------------------


def json_problems(value: Any, loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    """Problems no store could hold or read back in ``value`` (NUL characters and lone
    surrogates in strings or keys, NaN or infinite numbers, nesting deeper than the highest
    depth limit allowed); the service layer checks the configured depth limit itself."""
    return jsonlimits.json_problems(value, list(loc), max_depth=jsonlimits.MAX_DEPTH_LIMIT)
