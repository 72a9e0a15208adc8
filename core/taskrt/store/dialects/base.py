"""What differs between the databases the store runs on, behind one interface.

The store's logic calls these methods and never asks which database it is on; the dialect is
chosen once, when the store is built (:func:`taskrt.store.dialects.dialect_for`).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskrt.db import models
from taskrt.records import Actor, ClaimedRun, FinishReport, RunFinish, TaskInsert
from taskrt.store.executor import SqlExecutor

Placed = dict[uuid.UUID, tuple[uuid.UUID, datetime] | None]
"""For each task created: its first run's id and due time (None for a template)."""


class Claimer(Protocol):
    """Claims on one connection, all under one worker's lease token."""

    def by_ids(self, run_ids: Sequence[uuid.UUID]) -> list[ClaimedRun]:
        """Claim the queued, due runs among ``run_ids``, in no particular order."""

    def next(self, tenant: str, queue: str, limit: int) -> list[ClaimedRun]:
        """Claim up to ``limit`` of the oldest due runs of ``tenant``'s ``queue`` (none while
        it is paused), in no particular order."""


class Reads(Protocol):
    """The reads made on every API request, which PostgreSQL may make through psycopg."""

    def task(
        self, task_id: uuid.UUID, *, runs: bool, tenant: str
    ) -> tuple[Mapping[Any, Any] | None, list[Mapping[Any, Any]]]:
        """The ``tasks`` row of ``task_id`` (None if unknown or another tenant's) and, with
        ``runs``, its runs' rows, oldest first."""

    def api_key(self, prefix: str) -> Mapping[Any, Any] | None:
        """The ``api_keys`` row whose prefix is ``prefix``."""


class SqlAlchemyReads:
    """:class:`Reads` through SQLAlchemy Core (every database)."""

    def __init__(self, sql: SqlExecutor) -> None:
        self.executor = sql

    def task(
        self, task_id: uuid.UUID, *, runs: bool, tenant: str
    ) -> tuple[Mapping[Any, Any] | None, list[Mapping[Any, Any]]]:
        """See :meth:`Reads.task`."""
        tasks, task_runs = models.tasks, models.task_runs
        with self.executor.connection() as conn:
            row = (
                conn.execute(
                    sa.select(tasks).where(tasks.c.id == task_id, tasks.c.tenant == tenant)
                )
                .mappings()
                .first()
            )
            if row is None or not runs:
                return row, []
            run_rows = conn.execute(
                sa.select(task_runs)
                .where(task_runs.c.task_id == task_id, task_runs.c.tenant == tenant)
                .order_by(task_runs.c.attempt)
            ).mappings()
            return row, list(run_rows)

    def api_key(self, prefix: str) -> Mapping[Any, Any] | None:
        """See :meth:`Reads.api_key`."""
        keys = models.api_keys
        with self.executor.connection() as conn:
            return conn.execute(sa.select(keys).where(keys.c.prefix == prefix)).mappings().first()


class Dialect(ABC):
    """One database's way of running the store's statements."""

    name: str
    """The SQLAlchemy dialect name (``postgresql``, ``sqlite``)."""

    def __init__(self, sql: SqlExecutor, reads: Reads) -> None:
        self.executor = sql
        self.reads = reads

    # --- small differences ----------------------------------------------------------------
    @abstractmethod
    def upsert(self, table: sa.Table) -> Any:
        """An INSERT on ``table`` that accepts ``on_conflict_do_*``."""

    @abstractmethod
    def skip_locked(self, stmt: sa.Select[Any], of: sa.Table) -> sa.Select[Any]:
        """``stmt`` locking the rows of ``of`` it reads, skipping rows another transaction
        holds (SQLite serializes writers instead: unchanged there)."""

    @abstractmethod
    def relax_commit(self, conn: Connection) -> None:
        """Let ``conn``'s transaction commit without waiting for the WAL flush, where the
        database can (for writes whose loss costs nothing but a repeat)."""

    def one_of(
        self, column: sa.ColumnElement[Any], values: Sequence[Any]
    ) -> sa.ColumnElement[bool]:
        """``column`` equal to one of ``values``, as a condition whose SQL text does not depend
        on how many values there are where the database can (so it is compiled and prepared
        once; PostgreSQL: ``= ANY(array)``), else ``IN (...)``."""
        return column.in_(values)

    def delete_picked_tasks(
        self, conn: Connection, pick: sa.Select[Any]
    ) -> tuple[list[uuid.UUID], int]:
        """Delete the tasks ``pick`` selects (their ids) with their runs and outbox rows;
        the ids deleted and how many runs went with them."""
        ids = list(conn.execute(pick).scalars())
        if not ids:
            return [], 0
        of_tasks = self.one_of(models.task_runs.c.task_id, ids)
        run_ids = sa.select(models.task_runs.c.id).where(of_tasks)
        conn.execute(sa.delete(models.outbox).where(models.outbox.c.run_id.in_(run_ids)))
        runs = conn.execute(sa.delete(models.task_runs).where(of_tasks)).rowcount
        conn.execute(sa.delete(models.tasks).where(self.one_of(models.tasks.c.id, ids)))
        return ids, int(runs)

    def try_exclusive(self, conn: Connection, key: int) -> bool:
        """Take the transaction-scoped lock ``key`` if no other transaction holds it, saying
        whether it did (SQLite serializes writers instead: always True there)."""
        return True

    def try_hold(self, conn: Connection, key: int) -> bool:
        """Take the session-scoped lock ``key`` on ``conn`` if no other session holds it, saying
        whether it did; it lasts until :meth:`release` or the connection's end (always True on
        SQLite)."""
        return True

    def release(self, conn: Connection, key: int) -> None:  # noqa: B027 - nothing to give back
        """Give back the session lock :meth:`try_hold` took on ``conn``."""

    def raw_statement(self, *, relaxed: bool = False) -> AbstractContextManager[Any]:
        """The driver connection for hot statements (PostgreSQL only)."""
        raise NotImplementedError(f"{self.name} has no raw statement path")

    @abstractmethod
    def dispose(self) -> None:
        """Close connections the dialect pools besides the store's engine."""

    # --- hot paths ------------------------------------------------------------------------
    @abstractmethod
    def insert_at_once(
        self, items: Sequence[TaskInsert], *, outbox: bool, actor: Actor | None
    ) -> Placed | None:
        """Create ``items`` (with their audit rows) in one atomic statement if this database
        can and none of them can conflict; None: the caller runs the transaction instead."""

    @abstractmethod
    def place_tasks(self, conn: Connection, items: Sequence[TaskInsert], *, outbox: bool) -> Placed:
        """Inside ``conn``'s transaction, create in one statement the tasks of ``items`` that
        no live task's dedup key blocks, with their first runs (and outbox rows); the rest are
        left out for the caller. May place none."""

    @abstractmethod
    def claimer(
        self, *, worker_id: uuid.UUID, lease_token: str, lease_ttl: float
    ) -> AbstractContextManager[Claimer]:
        """A :class:`Claimer` on one connection (on SQLite: one transaction)."""

    @abstractmethod
    def renew_leases(
        self, run_ids: Sequence[uuid.UUID], *, worker_id: uuid.UUID, lease_ttl: float
    ) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        """Extend this worker's leases; return (runs still ours, runs asked to cancel)."""

    @abstractmethod
    def finish_runs(self, finishes: Sequence[RunFinish], *, outbox: bool) -> FinishReport:
        """Write the outcomes, fenced by lease token, with their tasks' new status and the
        next run of each retry (:func:`taskrt.store.rules.task_outcome`), in one transaction;
        ``won`` and ``fenced`` in the order given, ``retries`` for the runs created."""
