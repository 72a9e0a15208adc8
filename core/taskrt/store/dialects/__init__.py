"""The databases the store runs on; :func:`dialect_for` is where one is chosen."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from taskrt.store.dialects.base import Claimer, Dialect, Placed, Reads
from taskrt.store.executor import SqlExecutor


def dialect_for(engine: Engine, *, raw_reads: bool = True) -> Dialect:
    """The dialect for ``engine``'s database. ``raw_reads=False`` makes PostgreSQL's hot reads
    through SQLAlchemy too, as on SQLite (for comparing the two paths)."""
    sql = SqlExecutor(engine)
    if engine.dialect.name == "postgresql":
        from taskrt.store.dialects.postgresql import PostgresDialect

        return PostgresDialect(sql, raw_reads=raw_reads)
    from taskrt.store.dialects.sqlite import SqliteDialect

    return SqliteDialect(sql)


__all__ = ["Claimer", "Dialect", "Placed", "Reads", "dialect_for"]
