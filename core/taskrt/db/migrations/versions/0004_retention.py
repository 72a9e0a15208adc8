"""Retention: the index pruning picks finished tasks by (docs/how-to/retention.md).

``(status, finished_at)``, partial on finished tasks (an enqueue writes no entry for it): each
pruning batch is an ordered range scan of one status that stops after the batch, however many
tasks the table holds. Searches by finish time read it too (with the three finished statuses). Audit rows and schedule fires are pruned in primary-key order (their ids
grow with time) and need no index of their own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``ix_tasks_status_finished_at``."""
    op.create_index(
        "ix_tasks_status_finished_at",
        "tasks",
        ["status", "finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    )


def downgrade() -> None:
    """Drop ``ix_tasks_status_finished_at``."""
    op.drop_index("ix_tasks_status_finished_at", table_name="tasks")
