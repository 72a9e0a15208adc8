"""The store's shared plumbing: the engine, transactions and dialect differences."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskrt.db import models
from taskrt.exceptions import BackendUnavailableError

TASKS = models.tasks
RUNS = models.task_runs
OUTBOX = models.outbox
WORKERS = models.workers
AUDIT = models.audit_log
QUEUES = models.queues
SCHEDULES = models.schedules
FIRES = models.schedule_fires
API_KEYS = models.api_keys


def _in_utc(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row read through psycopg directly, with its timestamps in UTC as UTCDateTime hands
    them back through SQLAlchemy (psycopg gives them in the session's time zone)."""
    return {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in row.items()}


def dumps(value: Any) -> str | None:
    """JSON text of ``value`` for the batch statements (``None`` stays SQL NULL)."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), default=str)


class StoreBase:
    """Owns the engine; every statement taskrt runs goes through a subclass of this."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.is_postgresql = self.dialect == "postgresql"
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
    def transaction(self) -> Iterator[Connection]:
        """One transaction; committed on success, rolled back on error."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise BackendUnavailableError(f"database error: {exc.orig or exc}") from exc

    @contextmanager
    def single_statement(self) -> Iterator[Connection]:
        """A connection for work that is one atomic statement: on PostgreSQL it runs in
        autocommit mode (no BEGIN and COMMIT round trips); on SQLite in a transaction."""
        if not self.is_postgresql:
            with self.transaction() as conn:
                yield conn
            return
        try:
            with self._autocommit.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise BackendUnavailableError(f"database error: {exc.orig or exc}") from exc

    @contextmanager
    def raw_statement(self, *, relaxed: bool = False) -> Iterator[Any]:
        """PostgreSQL only: the pooled psycopg connection itself, in autocommit mode, for the
        few hot statements that skip SQLAlchemy's per-statement work (psycopg already returns
        UUIDs, aware datetimes and decoded JSON).

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
    def raw_reader(self) -> Iterator[Callable[[str, Mapping[str, Any]], list[dict[str, Any]]]]:
        """PostgreSQL only: a function running reads on one :meth:`raw_statement` connection;
        each returns its rows as dicts, timestamps in UTC. For hot reads of wide rows, where
        SQLAlchemy's result set-up costs more than the statement."""
        from psycopg.rows import dict_row

        with self.raw_statement() as raw, raw.cursor(row_factory=dict_row) as cursor:

            def read(statement: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
                return [_in_utc(row) for row in cursor.execute(statement, params).fetchall()]

            yield read

    def raw_rows(self, statement: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One read through :meth:`raw_reader`."""
        with self.raw_reader() as read:
            return read(statement, params)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for reads (no explicit transaction management)."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise BackendUnavailableError(f"database error: {exc.orig or exc}") from exc

    def uuid_text(self, value: uuid.UUID) -> str:
        """A UUID as the text form this database stores (SQLite keeps 32 hex digits)."""
        return str(value) if self.is_postgresql else value.hex

    def ping(self) -> None:
        """Raise BackendUnavailableError unless the database answers."""
        with self.connection() as conn:
            conn.execute(sa.text("SELECT 1"))

    def now(self) -> Any:
        """The database clock, read once."""
        from taskrt.db.types import db_now

        with self.connection() as conn:
            return conn.execute(sa.select(db_now())).scalar_one()

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
        if self._relaxed_engine is not None:
            self._relaxed_engine.dispose()
