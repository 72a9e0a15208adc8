"""Initial schema: tasks, task_runs, outbox, queues, workers, schedules, schedule_fires, audit_log,
api_keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from taskrt.db.types import UTCDateTime, db_now

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql")
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE_TASKS = "status IN ('pending', 'queued', 'running', 'retrying')"
LIVE_DEDUP = f"dedup_key IS NOT NULL AND {LIVE_TASKS}"
LIVE_RUNS = "status IN ('queued', 'running')"


def _now_column(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, UTCDateTime(timezone=True), server_default=db_now(), nullable=False)


def _partial(where: str) -> dict[str, Any]:
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        _now_column("created_at"),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('reader', 'producer', 'admin')", name=op.f("ck_api_keys_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        _now_column("created_at"),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"])
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor", "id"])
    op.create_index("ix_audit_log_target_id", "audit_log", ["target_id"])

    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("queue_name", sa.String(length=64), nullable=False),
        sa.Column("payload", JSON, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=True),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("retry_strategy", sa.String(length=100), nullable=False),
        sa.Column("retry_params", JSON, nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("lost_runs", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.String(length=32), nullable=True),
        sa.Column("trace_id", sa.String(length=128), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(timezone=True), nullable=True),
        _now_column("created_at"),
        _now_column("updated_at"),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'running', 'retrying', 'completed', 'failed', "
            "'cancelled')",
            name=op.f("ck_tasks_status"),
        ),
        sa.CheckConstraint("type IN ('immediate', 'scheduled')", name=op.f("ck_tasks_type")),
        sa.CheckConstraint("max_retries >= 0", name=op.f("ck_tasks_max_retries")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_name_id", "tasks", ["name", "id"])
    op.create_index("ix_tasks_queue_name_status_id", "tasks", ["queue_name", "status", "id"])
    op.create_index("ix_tasks_status_id", "tasks", ["status", "id"])
    op.create_index(
        "uq_tasks_live_dedup", "tasks", ["name", "dedup_key"], unique=True, **_partial(LIVE_DEDUP)
    )

    op.create_table(
        "queues",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        _now_column("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_queues")),
    )

    op.create_table(
        "workers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _now_column("started_at"),
        _now_column("heartbeat_at"),
        sa.Column("stopped_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('online', 'draining', 'offline')", name=op.f("ck_workers_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_status_heartbeat_at", "workers", ["status", "heartbeat_at"])

    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("task_template_id", sa.Uuid(), nullable=False),
        sa.Column("cron_expr", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("misfire_policy", sa.String(length=16), nullable=False),
        sa.Column("last_triggered_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_fire_at", UTCDateTime(timezone=True), nullable=True),
        _now_column("created_at"),
        _now_column("updated_at"),
        sa.CheckConstraint(
            "misfire_policy IN ('skip', 'coalesce', 'all')", name=op.f("ck_schedules_misfire_policy")
        ),
        sa.ForeignKeyConstraint(
            ["task_template_id"],
            ["tasks.id"],
            name=op.f("fk_schedules_task_template_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index("ix_schedules_enabled_next_fire_at", "schedules", ["enabled", "next_fire_at"])

    op.create_table(
        "task_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("queue_name", sa.String(length=64), nullable=False),
        sa.Column("available_at", UTCDateTime(timezone=True), nullable=False),
        _now_column("enqueued_at"),
        sa.Column("worker_id", sa.Uuid(), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_traceback", sa.Text(), nullable=True),
        sa.Column("outcome_reason", sa.String(length=32), nullable=True),
        sa.Column("next_retry_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'lost', 'cancelled')",
            name=op.f("ck_task_runs_status"),
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_task_runs_attempt")),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_runs_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
        sa.UniqueConstraint("task_id", "attempt", name=op.f("uq_task_runs_task_id_attempt")),
    )
    op.create_index(
        "ix_task_runs_queued",
        "task_runs",
        ["queue_name", "available_at"],
        **_partial("status = 'queued'"),
    )
    op.create_index(
        "ix_task_runs_running_lease",
        "task_runs",
        ["lease_expires_at"],
        **_partial("status = 'running'"),
    )
    op.create_index(
        "uq_task_runs_one_live", "task_runs", ["task_id"], unique=True, **_partial(LIVE_RUNS)
    )

    op.create_table(
        "outbox",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("queue_name", sa.String(length=64), nullable=False),
        sa.Column("available_at", UTCDateTime(timezone=True), nullable=False),
        _now_column("created_at"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["task_runs.id"], name=op.f("fk_outbox_run_id_task_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_outbox")),
    )

    op.create_table(
        "schedule_fires",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("fire_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        _now_column("created_at"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_fires_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_schedule_fires_task_id_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint(
            "schedule_id", "fire_at", name=op.f("uq_schedule_fires_schedule_id_fire_at")
        ),
    )


    if op.get_bind().dialect.name == "postgresql":
        # tasks, runs and the outbox churn like a queue: vacuum and analyze them after 2 % of
        # their rows changed (the default is 20 % / 10 %), so dead rows do not pile up and the
        # planner keeps probing primary keys instead of scanning a stale partial index
        for table in ("tasks", "task_runs", "outbox"):
            op.execute(
                f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.02, "
                "autovacuum_analyze_scale_factor = 0.02)"
            )


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_table("outbox")
    op.drop_table("task_runs")
    op.drop_table("schedules")
    op.drop_table("workers")
    op.drop_table("queues")
    op.drop_table("tasks")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
