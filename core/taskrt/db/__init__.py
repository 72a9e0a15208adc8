"""Database schema, engines and migrations (PostgreSQL and SQLite)."""

SCHEMA_REVISION = "0005"
"""The newest migration this taskrt ships (Alembic's head). Processes compare it with the
database's recorded revision at start without importing Alembic; a unit test keeps it equal to
the head of ``taskrt/db/migrations``."""
