"""The schema revision processes check at start without Alembic is Alembic's head."""

from __future__ import annotations

from taskrt.db import SCHEMA_REVISION, migrate


def test_the_revision_checked_at_start_is_the_newest_migration() -> None:
    # a new migration must bump taskrt.db.SCHEMA_REVISION, or every process would import
    # Alembic at start again to find out that its database is up to date
    assert migrate.head_revision() == SCHEMA_REVISION
