"""The schema: tenants, tasks and runs, schedules and fires, workers, outbox, audit log, API keys.

PostgreSQL is the truth (docs/concepts/backends.md). Statuses are plain strings guarded by CHECK
constraints rather than native enums, so adding a status is an ordinary migration on both
PostgreSQL and SQLite. Ids are UUIDv7 made by the producer (:mod:`taskrt.ids`).

The tables are declared with SQLAlchemy Core only: nothing uses ORM sessions or mapped
classes, and importing ``sqlalchemy.orm`` would cost every worker several MB of memory.
A column is NOT NULL exactly where it says ``nullable=False`` (primary keys always are).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from taskrt.db.types import BigIntId, JSONType, UTCDateTime, db_now
from taskrt.records import DEFAULT_TENANT, LIVE_RUN_STATUSES, LIVE_TASK_STATUSES

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TASK_STATUSES = ("pending", "queued", "running", "retrying", "completed", "failed", "cancelled")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "lost", "cancelled")
WORKER_STATUSES = ("online", "draining", "offline")
MISFIRE_POLICIES = ("skip", "coalesce", "all")
ROLES = ("reader", "producer", "admin", "operator")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
"""All tables, carrying the constraint naming convention Alembic relies on."""


def _tenant_column(*args: Any) -> sa.Column[str]:
    """The ``tenant`` column every tenant-owned table carries; rows written without one
    belong to the default tenant. ``args`` may add a foreign key."""
    return sa.Column("tenant", sa.String(64), *args, nullable=False, server_default=DEFAULT_TENANT)


# A tenant: its fair-dequeue weight and its quotas (NULL means unlimited). The hot tables
# (tasks, task_runs, outbox) carry a tenant name without a foreign key: the service checks it.
tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
    sa.Column("max_queued", sa.Integer),
    sa.Column("enqueue_rate", sa.String(32)),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("updated_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.CheckConstraint("weight BETWEEN 1 AND 1000", name="weight"),
    sa.CheckConstraint("max_queued >= 0", name="max_queued"),
)

# The enqueue-rate token bucket of a tenant with a rate quota.
tenant_quota_state = sa.Table(
    "tenant_quota_state",
    metadata,
    sa.Column(
        "tenant",
        sa.String(64),
        sa.ForeignKey("tenants.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("refilled_at", UTCDateTime, nullable=False),
)


# A unit of work, or (``type='scheduled'``) the template a schedule fires.
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_column(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(16), nullable=False, default="immediate"),
    sa.Column("priority", sa.SmallInteger, nullable=False, default=0),
    sa.Column("queue_name", sa.String(64), nullable=False),
    sa.Column("payload", JSONType),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dedup_key", sa.String(200)),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("retry_strategy", sa.String(100), nullable=False),
    sa.Column("retry_params", JSONType, nullable=False, default=dict),
    sa.Column("timeout_seconds", sa.Float),
    sa.Column("retry_count", sa.Integer, nullable=False, default=0),
    sa.Column("lost_runs", sa.Integer, nullable=False, default=0),
    sa.Column("failure_reason", sa.String(32)),
    sa.Column("trace_id", sa.String(128)),
    sa.Column("cancel_requested_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("updated_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("finished_at", UTCDateTime),
    sa.CheckConstraint(_in("status", TASK_STATUSES), name="status"),
    sa.CheckConstraint(_in("type", ("immediate", "scheduled")), name="type"),
    sa.CheckConstraint("max_retries >= 0", name="max_retries"),
    # A dedup key is unique among live tasks of one type of one tenant: the race-free dedup
    # of enqueue.
    sa.Index(
        "uq_tasks_tenant_live_dedup",
        "tenant",
        "name",
        "dedup_key",
        unique=True,
        postgresql_where=sa.text(f"dedup_key IS NOT NULL AND {_in('status', LIVE_TASK_STATUSES)}"),
        sqlite_where=sa.text(f"dedup_key IS NOT NULL AND {_in('status', LIVE_TASK_STATUSES)}"),
    ),
    # Listings and search within a tenant lead with it.
    sa.Index("ix_tasks_tenant_status_id", "tenant", "status", "id"),
    sa.Index("ix_tasks_tenant_queue_name_status_id", "tenant", "queue_name", "status", "id"),
    sa.Index("ix_tasks_tenant_name_id", "tenant", "name", "id"),
    # Pruning (docs/how-to/retention.md) and search by finish time: finished tasks of one
    # status, oldest first, across tenants (a tenant's search filters tenant after it).
    sa.Index(
        "ix_tasks_status_finished_at",
        "status",
        "finished_at",
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    ),
    # Search (docs/how-to/search.md): dedup keys and payload equality, partial where the column
    # is mostly empty, so an enqueue writes no entry for them.
    sa.Index(
        "ix_tasks_tenant_dedup_key_id",
        "tenant",
        "dedup_key",
        "id",
        postgresql_where=sa.text("dedup_key IS NOT NULL"),
        sqlite_where=sa.text("dedup_key IS NOT NULL"),
    ),
    # ``payload @> '{"customer_id": 42}'``; PostgreSQL only (SQLite reads json_extract).
    sa.Index(
        "ix_tasks_payload",
        "payload",
        postgresql_using="gin",
        postgresql_ops={"payload": "jsonb_path_ops"},
    ).ddl_if(dialect="postgresql"),
)

POSTGRESQL_ONLY = frozenset({"ix_tasks_payload"})
"""Schema objects that exist on PostgreSQL only (declared with ``ddl_if``)."""


def include_object(dialect_name: str) -> Callable[..., bool]:
    """An Alembic ``include_object`` hook for ``dialect_name``: schema comparisons leave out
    the objects declared for PostgreSQL only when the database is another one."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return dialect_name == "postgresql" or name not in POSTGRESQL_ONLY

    return include


# One attempt of a task. A retry is a new run with ``attempt + 1``.
task_runs = sa.Table(
    "task_runs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("task_id", sa.Uuid, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    _tenant_column(),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("queue_name", sa.String(64), nullable=False),
    sa.Column("available_at", UTCDateTime, nullable=False),
    sa.Column("enqueued_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("worker_id", sa.Uuid),
    sa.Column("lease_token", sa.String(64)),
    sa.Column("lease_expires_at", UTCDateTime),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("result", JSONType),
    sa.Column("error_type", sa.String(200)),
    sa.Column("error_message", sa.Text),
    sa.Column("error_traceback", sa.Text),
    sa.Column("outcome_reason", sa.String(32)),
    sa.Column("next_retry_at", UTCDateTime),
    # The run before it was lost with its worker, which may have been killed by another run:
    # this one executes with no other run beside it in its worker (docs/concepts/lifecycle.md).
    sa.Column("suspect", sa.Boolean, nullable=False, server_default=sa.false()),
    # When a worker started this suspect run alone; only such a run, if lost, spends the
    # task's poison budget.
    sa.Column("isolated_at", UTCDateTime),
    sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    sa.CheckConstraint("attempt >= 1", name="attempt"),
    sa.UniqueConstraint("task_id", "attempt"),
    # At most one run of a task is not terminal.
    sa.Index(
        "uq_task_runs_one_live",
        "task_id",
        unique=True,
        postgresql_where=sa.text(_in("status", LIVE_RUN_STATUSES)),
        sqlite_where=sa.text(_in("status", LIVE_RUN_STATUSES)),
    ),
    # Queued runs by tenant, queue and due time: the SQL backend's fetch and the reconciler.
    sa.Index(
        "ix_task_runs_queued",
        "tenant",
        "queue_name",
        "available_at",
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    ),
    # Runs that raised, by error type: search by the error type of a task's last failed run.
    sa.Index(
        "ix_task_runs_error_type_task_id",
        "error_type",
        "task_id",
        postgresql_where=sa.text("error_type IS NOT NULL"),
        sqlite_where=sa.text("error_type IS NOT NULL"),
    ),
    # Running runs by lease deadline: reaping expired leases.
    sa.Index(
        "ix_task_runs_running_lease",
        "lease_expires_at",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
)

# Runs committed but perhaps not yet in the queue backend; the relay re-dispatches them.
outbox = sa.Table(
    "outbox",
    metadata,
    # keyed by the run (UUIDv7, so key order is creation order): deleting a dispatched run's
    # row and the relay's oldest-first scan both use the primary key, and an enqueue writes
    # no other index for it
    sa.Column(
        "run_id",
        sa.Uuid,
        sa.ForeignKey("task_runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _tenant_column(),
    sa.Column("queue_name", sa.String(64), nullable=False),
    sa.Column("available_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=db_now()),
)

# Per-queue state that must survive the queue backend: whether the queue is paused. A queue
# belongs to a tenant: two tenants' queues of one name are two queues.
queues = sa.Table(
    "queues",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True, server_default=DEFAULT_TENANT),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", UTCDateTime, nullable=False, server_default=db_now()),
)

# A worker process and its heartbeat.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # the tenant served, or ``*`` for a worker serving several (listed in ``tenants``)
    _tenant_column(),
    sa.Column("tenants", JSONType),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", JSONType, nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("stopped_at", UTCDateTime),
    sa.CheckConstraint(_in("status", WORKER_STATUSES), name="status"),
    sa.Index("ix_workers_status_heartbeat_at", "status", "heartbeat_at"),
)

# A cron schedule firing copies of its template task.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_column(sa.ForeignKey("tenants.name")),
    sa.Column("name", sa.String(200)),
    sa.Column(
        "task_template_id",
        sa.Uuid,
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("cron_expr", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("misfire_policy", sa.String(16), nullable=False, default="coalesce"),
    sa.Column("last_triggered_at", UTCDateTime),
    sa.Column("next_fire_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("updated_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.CheckConstraint(_in("misfire_policy", MISFIRE_POLICIES), name="misfire_policy"),
    sa.Index("ix_schedules_enabled_next_fire_at", "enabled", "next_fire_at"),
    sa.Index("ix_schedules_tenant_id", "tenant", "id"),
)

# One fired slot of a schedule; unique per (schedule, fire time) so a slot fires once.
schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column(
        "schedule_id",
        sa.Uuid,
        sa.ForeignKey("schedules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("fire_at", UTCDateTime, nullable=False),
    sa.Column("task_id", sa.Uuid, sa.ForeignKey("tasks.id", ondelete="SET NULL")),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.UniqueConstraint("schedule_id", "fire_at"),
)

# Who changed what, written in the same transaction as the change.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=db_now()),
    _tenant_column(),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(200)),
    sa.Column("request_id", sa.String(128)),
    sa.Column("client_ip", sa.String(64)),
    sa.Column("details", JSONType, nullable=False, default=dict),
    sa.Index("ix_audit_log_tenant_id", "tenant", "id"),
    sa.Index("ix_audit_log_tenant_action_id", "tenant", "action", "id"),
    sa.Index("ix_audit_log_tenant_target_id", "tenant", "target_id"),
    sa.Index("ix_audit_log_tenant_actor_id", "tenant", "actor", "id"),
)

# An API key, stored only as a hash plus a short prefix that identifies it.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    # a key is found by its globally unique prefix before its tenant is known
    _tenant_column(sa.ForeignKey("tenants.name", ondelete="RESTRICT")),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=db_now()),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
    sa.CheckConstraint(_in("role", ROLES), name="role"),
)
