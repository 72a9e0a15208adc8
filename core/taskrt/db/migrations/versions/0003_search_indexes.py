"""Search indexes: what every filter of ``GET /api/v1/tasks`` and ``taskrt task list`` reads.

Dedup keys and the error type of runs get B-tree indexes (partial: an enqueue writes no entry
for them); finished time ranges read the pruning index of migration ``0004``; payload equality gets a GIN ``jsonb_path_ops`` index on
PostgreSQL only (SQLite compares ``json_extract`` row by row). See docs/how-to/search.md.
``IF NOT EXISTS``: on a large table the indexes may be built beforehand with ``CREATE INDEX
CONCURRENTLY`` under these names, and this migration then leaves them be.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _partial(where: str) -> dict[str, Any]:
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    """Create the search indexes."""
    op.create_index(
        "ix_tasks_dedup_key_id",
        "tasks",
        ["dedup_key", "id"],
        if_not_exists=True,
        **_partial("dedup_key IS NOT NULL"),
    )
    op.create_index(
        "ix_task_runs_error_type_task_id",
        "task_runs",
        ["error_type", "task_id"],
        if_not_exists=True,
        **_partial("error_type IS NOT NULL"),
    )
    if op.get_context().dialect.name == "postgresql":
        op.create_index(
            "ix_tasks_payload",
            "tasks",
            ["payload"],
            postgresql_using="gin",
            postgresql_ops={"payload": "jsonb_path_ops"},
            if_not_exists=True,
        )


def downgrade() -> None:
    """Drop the search indexes."""
    if op.get_context().dialect.name == "postgresql":
        op.drop_index("ix_tasks_payload", table_name="tasks")
    op.drop_index("ix_task_runs_error_type_task_id", table_name="task_runs")
    op.drop_index("ix_tasks_dedup_key_id", table_name="tasks")
