"""Suspect runs: a run whose predecessor was lost with a worker that held other runs too
executes alone, and only a run lost while executing alone spends the poison budget.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from taskrt.db.types import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``task_runs.suspect`` and ``task_runs.isolated_at``."""
    with op.batch_alter_table("task_runs") as batch:
        batch.add_column(
            sa.Column("suspect", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("isolated_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("isolated_at")
        batch.drop_column("suspect")
