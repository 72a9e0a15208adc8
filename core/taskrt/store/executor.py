"""Running statements: SQLAlchemy connections for every database, and the pooled psycopg
connection itself for PostgreSQL's hot statements."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskrt.exceptions import BackendUnavailableError

RowReader = Callable[[str, Mapping[str, Any]], list[dict[str, Any]]]
"""Runs one read and returns its rows as dicts."""


def _in_utc(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row read through psycopg directly, with its timestamps in UTC as UTCDateTime hands
    them back through SQLAlchemy (psycopg gives them in the session's time zone)."""
    return {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in row.items()}


class SqlExecutor:
    """SQLAlchemy connections on the store's engine; driver errors become
    BackendUnavailableError."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; committed on success, rolled back on error."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise BackendUnavailableError(f"database error: {exc.orig or exc}") from exc

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for reads (no explicit transaction management)."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise BackendUnavailableError(f"database error: {exc.orig or exc}") from exc


class PsycopgExecutor:
    """PostgreSQL: the pooled psycopg connections themselves, in autocommit mode, for the few
    hot statements that skip SQLAlchemy's per-statement work (psycopg already returns UUIDs,
    aware datetimes and decoded JSON)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._relaxed_engine: Engine | None = None

    @property
    def _relaxed(self) -> Engine:
        """A small second pool whose sessions commit without waiting for the WAL flush."""
        if self._relaxed_engine is None:
            from taskrt.db.engine import create_engine

            self._relaxed_engine = create_engine(
                self.engine.url.render_as_string(hide_password=False),
                pool_size=2,
                max_overflow=4,
                isolation_level="AUTOCOMMIT",
                connect_args={"options": "-c synchronous_commit=off"},
            )
        return self._relaxed_engine

    @contextmanager
    def statement(self, *, relaxed: bool = False) -> Iterator[Any]:
        """A psycopg connection in autocommit mode.

        ``relaxed`` statements commit without waiting for the WAL flush. Only writes that a
        database crash may lose without harm use it: claims and lease renewals, which the
        lease token fences (a lost claim makes the run queued again, and the worker's outcome
        for it is rejected; the run executes again: at least once).
        """
        import psycopg

        engine = self._relaxed if relaxed else self._autocommit
        try:
            with engine.connect() as conn:
                try:
                    yield conn.connection.driver_connection
                except psycopg.OperationalError as exc:
                    conn.invalidate()
                    raise BackendUnavailableError(f"database error: {exc}") from exc
        except sa.exc.OperationalError as exc:
            raise BackendUnavailableError(f"database error: {exc.orig or exc}") from exc

    @contextmanager
    def reader(self) -> Iterator[RowReader]:
        """A function running reads on one :meth:`statement` connection; each returns its
        rows as dicts, timestamps in UTC. For hot reads of wide rows, where SQLAlchemy's
        result set-up costs more than the statement."""
        from psycopg.rows import dict_row

        with self.statement() as raw, raw.cursor(row_factory=dict_row) as cursor:

            def read(statement: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
                return [_in_utc(row) for row in cursor.execute(statement, params).fetchall()]

            yield read

    def rows(self, statement: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One read through :meth:`reader`."""
        with self.reader() as read:
            return read(statement, params)

    def dispose(self) -> None:
        """Close the relaxed pool (the main pool is the store's engine)."""
        if self._relaxed_engine is not None:
            self._relaxed_engine.dispose()
