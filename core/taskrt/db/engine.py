"""Creating SQLAlchemy engines for PostgreSQL (psycopg 3) and SQLite."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from taskrt.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; the busy timeout makes writers queue instead of
    # failing with "database is locked"; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading
    # from a read lock; the busy timeout then orders them.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """An engine for ``url``. Connects lazily: creating it touches no file and no server."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        # pysqlite's own transaction handling would defer BEGIN; take it over (SQLAlchemy docs,
        # "Serializable isolation / Savepoints / Transactional DDL").
        engine.dialect.isolation_level = None  # type: ignore[attr-defined]

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None
            _sqlite_on_connect(dbapi_connection, record)

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: it would cost a round trip per transaction on the hot path. A connection
    # that died (a database restart) fails its statement once and the pool is invalidated;
    # every loop of taskrt retries, and producers get a BackendUnavailableError.
    return sa.create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
    )


def engine_from_settings(settings: Settings) -> Engine:
    """The engine the settings describe."""
    return create_engine(settings.database_url, pool_size=settings.database_pool_size)
