"""Creating SQLAlchemy engines for PostgreSQL (psycopg 3) and SQLite."""

from __future__ import annotations

import select
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


def create_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, **engine_options: Any
) -> Engine:
    """An engine for ``url``. Connects lazily: creating it touches no file and no server.
    ``engine_options`` go to :func:`sqlalchemy.create_engine` (PostgreSQL only)."""
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
    # No pre-ping (a round trip per checkout on the hot path): a zero-cost liveness check
    # instead, which drops the connections a database restart closed before they are used.
    options: dict[str, Any] = {"max_overflow": pool_size, "pool_recycle": 1800}
    options.update(engine_options)
    engine = sa.create_engine(url, echo=echo, pool_size=pool_size, **options)
    event.listen(engine, "checkout", drop_closed_connection)
    return engine


def drop_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool ``checkout`` listener: refuse a pooled PostgreSQL connection the server closed.

    A restart (or crash) of the server closes every connection it served, and the pool would
    hand each of them out once more, failing the first statement on it. An idle connection
    has nothing to read: a socket with something to read holds the server's goodbye (an
    "administrator command" error, then the end of the stream), or at best an unsolicited
    message taskrt does not use. Either way the connection is refused without a round trip:
    :class:`~sqlalchemy.exc.DisconnectionError` makes the pool discard it and connect anew.
    """
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        return
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
        broken = bool(readable) or pgconn.status != 0  # psycopg.pq.ConnStatus.OK
    except Exception as exc:  # no socket any more: it is unusable
        raise sa.exc.DisconnectionError(f"pooled connection closed by the server: {exc}") from exc
    if broken:
        raise sa.exc.DisconnectionError("pooled connection closed by the server")


def engine_from_settings(settings: Settings) -> Engine:
    """The engine the settings describe."""
    return create_engine(settings.database_url, pool_size=settings.database_pool_size)
