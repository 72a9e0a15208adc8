"""Tenants: the ``tenants`` and ``tenant_quota_state`` tables, a ``tenant`` column on every
tenant-owned table, and per-tenant indexes (docs/how-to/tenants.md).

Every ``tenant`` column is ``varchar(64) NOT NULL DEFAULT 'default'``, so existing rows belong
to the ``default`` tenant, whose row this migration inserts. On PostgreSQL 11+ adding such a
column is metadata-only (no table rewrite). The new indexes lead with the tenant, a column
this migration adds, so they are built here, inside the upgrade's transaction: on a large table
plan a maintenance window (docs/how-to/tenants.md, "Upgrading to tenants"). The dedup key becomes unique
per tenant, and a queue's pause state is kept per tenant (``queues`` is keyed by
``(tenant, name)``).

Stop producers and API processes during the upgrade: an older process's ``ON CONFLICT (name,
dedup_key)`` no longer matches a unique index. Workers may keep running; their statements wait
on the locks the index builds hold until the migration commits.

The downgrade refuses while any row belongs to a tenant other than ``default``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from taskrt.db.types import UTCDateTime, db_now

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_TENANT = "default"  # a migration keeps its own copy of the value it writes
JSON = sa.JSON().with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)
LIVE_DEDUP = "dedup_key IS NOT NULL AND status IN ('pending', 'queued', 'running', 'retrying')"
OLD_ROLES = "role IN ('reader', 'producer', 'admin')"
NEW_ROLES = "role IN ('reader', 'producer', 'admin', 'operator')"

TENANT_TABLES = (
    "tasks",
    "task_runs",
    "outbox",
    "queues",
    "schedules",
    "workers",
    "api_keys",
    "audit_log",
)
"""The tables that gain a ``tenant`` column."""

# (table, old name, old columns, new name, new columns, partial WHERE or None, unique)
INDEXES: tuple[tuple[str, str, list[str], str, list[str], str | None, bool], ...] = (
    (
        "tasks",
        "uq_tasks_live_dedup",
        ["name", "dedup_key"],
        "uq_tasks_tenant_live_dedup",
        ["tenant", "name", "dedup_key"],
        LIVE_DEDUP,
        True,
    ),
    (
        "tasks",
        "ix_tasks_status_id",
        ["status", "id"],
        "ix_tasks_tenant_status_id",
        ["tenant", "status", "id"],
        None,
        False,
    ),
    (
        "tasks",
        "ix_tasks_queue_name_status_id",
        ["queue_name", "status", "id"],
        "ix_tasks_tenant_queue_name_status_id",
        ["tenant", "queue_name", "status", "id"],
        None,
        False,
    ),
    (
        "tasks",
        "ix_tasks_name_id",
        ["name", "id"],
        "ix_tasks_tenant_name_id",
        ["tenant", "name", "id"],
        None,
        False,
    ),
    (
        "tasks",
        "ix_tasks_dedup_key_id",
        ["dedup_key", "id"],
        "ix_tasks_tenant_dedup_key_id",
        ["tenant", "dedup_key", "id"],
        "dedup_key IS NOT NULL",
        False,
    ),
    (
        "audit_log",
        "ix_audit_log_action_id",
        ["action", "id"],
        "ix_audit_log_tenant_action_id",
        ["tenant", "action", "id"],
        None,
        False,
    ),
    (
        "audit_log",
        "ix_audit_log_actor_id",
        ["actor", "id"],
        "ix_audit_log_tenant_actor_id",
        ["tenant", "actor", "id"],
        None,
        False,
    ),
    (
        "audit_log",
        "ix_audit_log_target_id",
        ["target_id"],
        "ix_audit_log_tenant_target_id",
        ["tenant", "target_id"],
        None,
        False,
    ),
)

QUEUED_RUNS_WHERE = "status = 'queued'"


def _partial(where: str | None) -> dict[str, Any]:
    if where is None:
        return {}
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def _tenant_column() -> sa.Column[str]:
    return sa.Column("tenant", sa.String(64), nullable=False, server_default=DEFAULT_TENANT)


def _is_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


@contextmanager
def _keeping_schedule_fires() -> Iterator[None]:
    """Rebuild ``schedules`` on SQLite without losing its fires.

    SQLite rebuilds a table by copy and drops the old one; with foreign keys on (they cannot be
    turned off inside the migration's transaction) that drop cascades to ``schedule_fires``.
    The fires are kept aside in a temporary table and put back.
    """
    if _is_postgresql():
        yield
        return
    op.execute("CREATE TEMP TABLE _taskrt_fires AS SELECT * FROM schedule_fires")
    yield
    op.execute("DELETE FROM schedule_fires")
    op.execute("INSERT INTO schedule_fires SELECT * FROM _taskrt_fires")
    op.execute("DROP TABLE _taskrt_fires")


def _drop_tenant_column(table: str) -> None:
    # SQLite (3.35+) drops a plain column in place; a rebuild by copy would cascade deletes
    if _is_postgresql():
        op.drop_column(table, "tenant")
    else:
        op.execute(f"ALTER TABLE {table} DROP COLUMN tenant")


def upgrade() -> None:
    """Create the tenant tables and columns, then swap the indexes for tenant-led ones."""
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("max_queued", sa.Integer(), nullable=True),
        sa.Column("enqueue_rate", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.CheckConstraint("weight BETWEEN 1 AND 1000", name=op.f("ck_tenants_weight")),
        sa.CheckConstraint("max_queued >= 0", name=op.f("ck_tenants_max_queued")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tenants")),
    )
    op.execute(
        sa.text("INSERT INTO tenants (name, weight) VALUES (:name, 1)").bindparams(
            name=DEFAULT_TENANT
        )
    )
    op.create_table(
        "tenant_quota_state",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenants.name"],
            name=op.f("fk_tenant_quota_state_tenant_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_quota_state")),
    )

    # plain columns: ALTER TABLE ADD COLUMN on both databases, no rewrite
    for table in ("tasks", "task_runs", "outbox", "audit_log"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(_tenant_column())
    with op.batch_alter_table("workers") as batch:
        batch.add_column(_tenant_column())
        batch.add_column(sa.Column("tenants", JSON, nullable=True))

    # foreign keys, the role CHECK and the primary key: SQLite rebuilds these tables by copy
    with _keeping_schedule_fires(), op.batch_alter_table("schedules") as batch:
        batch.add_column(_tenant_column())
        batch.create_foreign_key(
            op.f("fk_schedules_tenant_tenants"), "tenants", ["tenant"], ["name"]
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(_tenant_column())
        batch.create_foreign_key(
            op.f("fk_api_keys_tenant_tenants"),
            "tenants",
            ["tenant"],
            ["name"],
            ondelete="RESTRICT",
        )
        batch.drop_constraint(op.f("ck_api_keys_role"), type_="check")
        batch.create_check_constraint(op.f("ck_api_keys_role"), sa.text(NEW_ROLES))
    with op.batch_alter_table("queues") as batch:
        batch.add_column(_tenant_column())
        batch.drop_constraint(op.f("pk_queues"), type_="primary")
        batch.create_primary_key(op.f("pk_queues"), ["tenant", "name"])

    for table, old, _, new, columns, where, unique in INDEXES:
        op.create_index(new, table, columns, unique=unique, if_not_exists=True, **_partial(where))
        op.drop_index(old, table_name=table)
    op.drop_index("ix_task_runs_queued", table_name="task_runs")
    op.create_index(
        "ix_task_runs_queued",
        "task_runs",
        ["tenant", "queue_name", "available_at"],
        **_partial(QUEUED_RUNS_WHERE),
    )
    op.create_index("ix_audit_log_tenant_id", "audit_log", ["tenant", "id"], if_not_exists=True)
    op.create_index("ix_schedules_tenant_id", "schedules", ["tenant", "id"], if_not_exists=True)


def _refuse_other_tenants() -> None:
    conn = op.get_bind()
    tables = [*TENANT_TABLES, "tenants"]
    for table in tables:
        column = "name" if table == "tenants" else "tenant"
        col: sa.ColumnClause[str] = sa.column(column)
        query = sa.select(col).select_from(sa.table(table, col)).where(col != DEFAULT_TENANT)
        found = conn.execute(query.limit(1)).first()
        if found is not None:
            raise RuntimeError(
                f"cannot downgrade below 0005: table {table} holds rows of tenant {found[0]!r}; "
                f"only the {DEFAULT_TENANT!r} tenant survives a downgrade (delete the other "
                "tenants' data first)"
            )


def downgrade() -> None:
    """Restore the tenant-less schema; refuses while another tenant than ``default`` has rows."""
    _refuse_other_tenants()

    op.drop_index("ix_schedules_tenant_id", table_name="schedules")
    op.drop_index("ix_audit_log_tenant_id", table_name="audit_log")
    op.drop_index("ix_task_runs_queued", table_name="task_runs")
    op.create_index(
        "ix_task_runs_queued",
        "task_runs",
        ["queue_name", "available_at"],
        **_partial(QUEUED_RUNS_WHERE),
    )
    for table, old, columns, new, _, where, unique in reversed(INDEXES):
        op.create_index(old, table, columns, unique=unique, **_partial(where))
        op.drop_index(new, table_name=table)

    with op.batch_alter_table("queues") as batch:
        batch.drop_constraint(op.f("pk_queues"), type_="primary")
        batch.create_primary_key(op.f("pk_queues"), ["name"])
        batch.drop_column("tenant")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f("ck_api_keys_role"), type_="check")
        batch.create_check_constraint(op.f("ck_api_keys_role"), sa.text(OLD_ROLES))
        batch.drop_constraint(op.f("fk_api_keys_tenant_tenants"), type_="foreignkey")
        batch.drop_column("tenant")
    with _keeping_schedule_fires(), op.batch_alter_table("schedules") as batch:
        batch.drop_constraint(op.f("fk_schedules_tenant_tenants"), type_="foreignkey")
        batch.drop_column("tenant")
    if _is_postgresql():
        op.drop_column("workers", "tenants")
    else:
        op.execute("ALTER TABLE workers DROP COLUMN tenants")
    for table in ("workers", "audit_log", "outbox", "task_runs", "tasks"):
        _drop_tenant_column(table)

    op.drop_table("tenant_quota_state")
    op.drop_table("tenants")
