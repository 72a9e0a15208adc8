"""The store's shared plumbing: the engine, its dialect, transactions and the outbox setting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskrt.db import models
from taskrt.store.dialects import Dialect, dialect_for

TASKS = models.tasks
RUNS = models.task_runs
OUTBOX = models.outbox
WORKERS = models.workers
AUDIT = models.audit_log
QUEUES = models.queues
SCHEDULES = models.schedules
FIRES = models.schedule_fires
API_KEYS = models.api_keys
TENANTS = models.tenants


class StoreBase:
    """Owns the engine and its dialect; every statement taskrt runs goes through a subclass.

    ``outbox``: every write that creates a queued run also writes its outbox row, for a queue
    backend that dispatches after the commit (Redis; the relay sends what a producer did not).
    ``raw_reads=False`` makes PostgreSQL's hot reads through SQLAlchemy, as on SQLite.
    """

    def __init__(self, engine: Engine, *, outbox: bool = False, raw_reads: bool = True) -> None:
        self.engine = engine
        self.outbox = outbox
        self.sql: Dialect = dialect_for(engine, raw_reads=raw_reads)
        self.dialect = self.sql.name

    @property
    def is_postgresql(self) -> bool:
        """Whether the database is PostgreSQL (for callers outside the store, such as the SQL
        queue backend's LISTEN/NOTIFY wake-ups)."""
        return self.dialect == "postgresql"

    def transaction(self) -> AbstractContextManager[Connection]:
        """One transaction; committed on success, rolled back on error."""
        return self.sql.executor.transaction()

    def connection(self) -> AbstractContextManager[Connection]:
        """A connection for reads (no explicit transaction management)."""
        return self.sql.executor.connection()

    @contextmanager
    def raw_statement(self, *, relaxed: bool = False) -> Iterator[Any]:
        """PostgreSQL only: the pooled psycopg connection itself, in autocommit mode (see
        :meth:`taskrt.store.executor.PsycopgExecutor.statement`)."""
        with self.sql.raw_statement(relaxed=relaxed) as raw:
            yield raw

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
        self.sql.dispose()
