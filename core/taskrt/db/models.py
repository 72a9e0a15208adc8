"""The schema: tasks and runs, schedules and fires, workers, outbox, audit log, API keys.

PostgreSQL is the truth (DESIGN.md section 4). Statuses are plain strings guarded by CHECK
constraints rather than native enums, so adding a status is an ordinary migration on both
PostgreSQL and SQLite. Ids are UUIDv7 made by the producer (:mod:`taskrt.ids`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskrt.db.types import BigIntId, JSONType, UTCDateTime, db_now

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TASK_STATUSES = ("pending", "queued", "running", "retrying", "completed", "failed", "cancelled")
LIVE_TASK_STATUSES = ("pending", "queued", "running", "retrying")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "lost", "cancelled")
LIVE_RUN_STATUSES = ("queued", "running")
WORKER_STATUSES = ("online", "draining", "offline")
MISFIRE_POLICIES = ("skip", "coalesce", "all")
ROLES = ("reader", "producer", "admin")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention Alembic relies on."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Task(Base):
    """A unit of work, or (``type='scheduled'``) the template a schedule fires."""

    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    type: Mapped[str] = mapped_column(sa.String(16), default="immediate")
    priority: Mapped[int] = mapped_column(sa.SmallInteger, default=0)
    queue_name: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    dedup_key: Mapped[str | None] = mapped_column(sa.String(200))
    max_retries: Mapped[int] = mapped_column(sa.Integer)
    retry_strategy: Mapped[str] = mapped_column(sa.String(100))
    retry_params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    timeout_seconds: Mapped[float | None] = mapped_column(sa.Float)
    retry_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    lost_runs: Mapped[int] = mapped_column(sa.Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(32))
    trace_id: Mapped[str | None] = mapped_column(sa.String(128))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint(_in("status", TASK_STATUSES), name="status"),
        sa.CheckConstraint(_in("type", ("immediate", "scheduled")), name="type"),
        sa.CheckConstraint("max_retries >= 0", name="max_retries"),
        # A dedup key is unique among live tasks of one type: the race-free dedup of enqueue.
        sa.Index(
            "uq_tasks_live_dedup",
            "name",
            "dedup_key",
            unique=True,
            postgresql_where=sa.text(
                f"dedup_key IS NOT NULL AND {_in('status', LIVE_TASK_STATUSES)}"
            ),
            sqlite_where=sa.text(f"dedup_key IS NOT NULL AND {_in('status', LIVE_TASK_STATUSES)}"),
        ),
        sa.Index("ix_tasks_status_id", "status", "id"),
        sa.Index("ix_tasks_queue_name_status_id", "queue_name", "status", "id"),
        sa.Index("ix_tasks_name_id", "name", "id"),
    )


class TaskRun(Base):
    """One attempt of a task. A retry is a new run with ``attempt + 1``."""

    __tablename__ = "task_runs"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16))
    queue_name: Mapped[str] = mapped_column(sa.String(64))
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    worker_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    lease_token: Mapped[str | None] = mapped_column(sa.String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error_type: Mapped[str | None] = mapped_column(sa.String(200))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    error_traceback: Mapped[str | None] = mapped_column(sa.Text)
    outcome_reason: Mapped[str | None] = mapped_column(sa.String(32))
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        sa.CheckConstraint("attempt >= 1", name="attempt"),
        sa.UniqueConstraint("task_id", "attempt"),
        # Invariant 1 of DESIGN.md: at most one run of a task is not terminal.
        sa.Index(
            "uq_task_runs_one_live",
            "task_id",
            unique=True,
            postgresql_where=sa.text(_in("status", LIVE_RUN_STATUSES)),
            sqlite_where=sa.text(_in("status", LIVE_RUN_STATUSES)),
        ),
        # Queued runs by queue and due time: the SQL backend's fetch and the reconciler.
        sa.Index(
            "ix_task_runs_queued",
            "queue_name",
            "available_at",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        ),
        # Running runs by lease deadline: reaping expired leases.
        sa.Index(
            "ix_task_runs_running_lease",
            "lease_expires_at",
            postgresql_where=sa.text("status = 'running'"),
            sqlite_where=sa.text("status = 'running'"),
        ),
    )


class Outbox(Base):
    """Runs committed but perhaps not yet in the queue backend; the relay re-dispatches them."""

    __tablename__ = "outbox"

    # keyed by the run (UUIDv7, so key order is creation order): deleting a dispatched run's
    # row and the relay's oldest-first scan both use the primary key, and an enqueue writes
    # no other index for it
    run_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("task_runs.id", ondelete="CASCADE"), primary_key=True
    )
    queue_name: Mapped[str] = mapped_column(sa.String(64))
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())


class QueueState(Base):
    """Per-queue state that must survive the queue backend: whether the queue is paused."""

    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())


class Worker(Base):
    """A worker process and its heartbeat."""

    __tablename__ = "workers"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    hostname: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column(sa.Integer)
    queues: Mapped[list[str]] = mapped_column(JSONType)
    concurrency: Mapped[int] = mapped_column(sa.Integer)
    version: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint(_in("status", WORKER_STATUSES), name="status"),
        sa.Index("ix_workers_status_heartbeat_at", "status", "heartbeat_at"),
    )


class Schedule(Base):
    """A cron schedule firing copies of its template task."""

    __tablename__ = "schedules"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    task_template_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("tasks.id", ondelete="CASCADE")
    )
    cron_expr: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    misfire_policy: Mapped[str] = mapped_column(sa.String(16), default="coalesce")
    last_triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())

    __table_args__ = (
        sa.CheckConstraint(_in("misfire_policy", MISFIRE_POLICIES), name="misfire_policy"),
        sa.Index("ix_schedules_enabled_next_fire_at", "enabled", "next_fire_at"),
    )


class ScheduleFire(Base):
    """One fired slot of a schedule; unique per (schedule, fire time) so a slot fires once."""

    __tablename__ = "schedule_fires"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    schedule_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("schedules.id", ondelete="CASCADE")
    )
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("tasks.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())

    __table_args__ = (sa.UniqueConstraint("schedule_id", "fire_at"),)


class AuditEntry(Base):
    """Who changed what, written in the same transaction as the change."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(64))
    target_type: Mapped[str] = mapped_column(sa.String(32))
    target_id: Mapped[str | None] = mapped_column(sa.String(200))
    request_id: Mapped[str | None] = mapped_column(sa.String(128))
    client_ip: Mapped[str | None] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        sa.Index("ix_audit_log_action_id", "action", "id"),
        sa.Index("ix_audit_log_target_id", "target_id"),
        sa.Index("ix_audit_log_actor_id", "actor", "id"),
    )


class ApiKey(Base):
    """An API key, stored only as a hash plus a short prefix that identifies it."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    prefix: Mapped[str] = mapped_column(sa.String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=db_now())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.CheckConstraint(_in("role", ROLES), name="role"),)


metadata = Base.metadata
