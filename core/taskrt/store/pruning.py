"""Pruning the history: finished tasks with their runs, old audit rows and schedule fires.

Every delete is one small transaction (a batch), so a prune stopped at any moment (even by
SIGKILL) leaves no task without its runs and no run without its task, and claims and finishes
never wait long for its locks. Only finished tasks (completed, failed, cancelled) are ever
selected, never schedule templates (docs/how-to/retention.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskrt.db.types import db_now_plus
from taskrt.records import FINISHED_TASK_STATUSES, Actor, TaskKind
from taskrt.store.audit import write_audit
from taskrt.store.base import AUDIT, FIRES, RUNS, SCHEDULES, TASKS, StoreBase

FINISHED_STATUSES = FINISHED_TASK_STATUSES
"""The only task statuses pruning ever touches."""

PRUNE_LOCK_KEY = 0x74726B70_7275
"""The PostgreSQL advisory lock automatic pruning holds, so one process prunes at a time."""
PRUNE_TURN_KEY = 0x74726B70_7274
"""The PostgreSQL session lock the one worker working off a pruning backlog holds meanwhile."""

HistoryTable = Literal["audit", "schedule_fires"]

ArchiveSink = Callable[[Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]], None]
"""Receives each batch's tasks (a row and its runs' rows) and returns once they are durably
written; the batch's delete commits only after it returned."""


@dataclass(frozen=True, slots=True)
class TaskSelection:
    """Which finished tasks a prune takes: per status, the age in seconds (counted from
    ``finished_at``) past which they go; optionally only one tenant's (None: every tenant's,
    as automatic retention and operators prune), one queue or one task type."""

    ages: Mapping[str, float]
    queue: str | None = None
    task_type: str | None = None
    tenant: str | None = None

    def active(self) -> dict[str, float]:
        """The statuses that are pruned at all (age above 0; 0 keeps forever)."""
        return {s: a for s, a in self.ages.items() if s in FINISHED_STATUSES and a > 0}


@dataclass(slots=True)
class TaskBatch:
    """What one batch of tasks removed (or, in a dry run, would remove)."""

    tasks: int = 0
    runs: int = 0
    ids: list[uuid.UUID] = field(default_factory=list)


def _age_cutoff(seconds: float) -> Any:
    return db_now_plus(sa.literal(-float(seconds), sa.Float()))


class PruneStore(StoreBase):
    """Deleting history in small batches, and counting what a prune would delete."""

    @staticmethod
    def _status_filter(selection: TaskSelection, status: str, age: float) -> sa.ColumnElement[bool]:
        conditions: list[sa.ColumnElement[bool]] = [
            TASKS.c.status == status,
            TASKS.c.finished_at.is_not(None),  # the partial index's predicate
            TASKS.c.finished_at < _age_cutoff(age),
            TASKS.c.type != TaskKind.SCHEDULED.value,
        ]
        if selection.tenant is not None:
            conditions.append(TASKS.c.tenant == selection.tenant)
        if selection.queue is not None:
            conditions.append(TASKS.c.queue_name == selection.queue)
        if selection.task_type is not None:
            conditions.append(TASKS.c.name == selection.task_type)
        return sa.and_(*conditions)

    def pick_statement(
        self, selection: TaskSelection, status: str, age: float, limit: int
    ) -> sa.Select[Any]:
        """The statement picking (and locking) the next ``limit`` tasks of ``status``."""
        return self.sql.skip_locked(
            sa.select(TASKS.c.id)
            .where(self._status_filter(selection, status, age))
            .order_by(TASKS.c.finished_at)
            .limit(limit),
            of=TASKS,
        )

    def _task_filter(self, selection: TaskSelection) -> sa.ColumnElement[bool] | None:
        ages = selection.active()
        if not ages:
            return None
        return sa.or_(*(self._status_filter(selection, s, a) for s, a in sorted(ages.items())))

    def prune_tasks(
        self,
        selection: TaskSelection,
        *,
        limit: int,
        archive: ArchiveSink | None = None,
        exclusive: bool = False,
    ) -> TaskBatch | None:
        """Delete one batch of at most ``limit`` selected tasks with their runs and outbox
        rows, in one transaction. ``archive`` gets the rows first; the delete commits only
        after it returned. ``exclusive``: do nothing (and return None) while another
        process's exclusive prune holds the lock.

        Tasks are picked one status at a time, the longest finished first, so each pick is
        an ordered range scan of ``ix_tasks_status_finished_at`` that stops at ``limit`` rows,
        whatever the size of the table."""
        ages = selection.active()
        if not ages:
            return TaskBatch()
        with self.transaction() as conn:
            if exclusive and not self.sql.try_exclusive(conn, PRUNE_LOCK_KEY):
                return None
            if archive is not None:
                return self._archive_and_delete(conn, selection, ages, limit, archive)
            batch = TaskBatch()
            for status, age in sorted(ages.items()):
                if batch.tasks >= limit:
                    break
                pick = self.pick_statement(selection, status, age, limit - batch.tasks)
                ids, runs = self.sql.delete_picked_tasks(conn, pick)
                batch.ids += ids
                batch.tasks += len(ids)
                batch.runs += runs
        return batch

    def _archive_and_delete(
        self,
        conn: Connection,
        selection: TaskSelection,
        ages: Mapping[str, float],
        limit: int,
        archive: ArchiveSink,
    ) -> TaskBatch:
        """The batch with an archive: the picked rows are read and written out before the
        delete (in this transaction, so they cannot change in between)."""
        ids: list[uuid.UUID] = []
        for status, age in sorted(ages.items()):
            if len(ids) >= limit:
                break
            pick = self.pick_statement(selection, status, age, limit - len(ids))
            ids += conn.execute(pick).scalars()
        if not ids:
            return TaskBatch()
        archive(self._task_rows(conn, ids))
        gone = sa.select(TASKS.c.id).where(self.sql.one_of(TASKS.c.id, ids))
        deleted, runs = self.sql.delete_picked_tasks(conn, gone)
        return TaskBatch(tasks=len(deleted), runs=runs, ids=deleted)

    def _task_rows(
        self, conn: Connection, ids: Sequence[uuid.UUID]
    ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        tasks = conn.execute(
            sa.select(TASKS).where(self.sql.one_of(TASKS.c.id, ids)).order_by(TASKS.c.id)
        )
        runs: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for run in conn.execute(
            sa.select(RUNS).where(self.sql.one_of(RUNS.c.task_id, ids)).order_by(RUNS.c.attempt)
        ).mappings():
            runs.setdefault(run["task_id"], []).append(dict(run))
        return [(dict(task), runs.get(task["id"], [])) for task in tasks.mappings()]

    def count_prunable_tasks(self, selection: TaskSelection) -> TaskBatch:
        """How many tasks and runs :meth:`prune_tasks` would delete now (ids not listed)."""
        where = self._task_filter(selection)
        if where is None:
            return TaskBatch()
        picked = sa.select(TASKS.c.id).where(where).subquery()
        with self.connection() as conn:
            tasks = conn.execute(sa.select(sa.func.count()).select_from(picked)).scalar_one()
            runs = conn.execute(
                sa.select(sa.func.count())
                .select_from(RUNS)
                .where(RUNS.c.task_id.in_(sa.select(picked.c.id)))
            ).scalar_one()
        return TaskBatch(tasks=int(tasks), runs=int(runs))

    @staticmethod
    def _history(table: HistoryTable) -> tuple[sa.Table, sa.Column[Any]]:
        if table == "audit":
            return AUDIT, AUDIT.c.created_at
        return FIRES, FIRES.c.fire_at

    @staticmethod
    def _history_tenant(table: HistoryTable, tenant: str | None) -> list[sa.ColumnElement[bool]]:
        """The rows of ``table`` that are ``tenant``'s (a fire is its schedule's)."""
        if tenant is None:
            return []
        if table == "audit":
            return [AUDIT.c.tenant == tenant]
        return [
            FIRES.c.schedule_id.in_(sa.select(SCHEDULES.c.id).where(SCHEDULES.c.tenant == tenant))
        ]

    def history_pick_statement(
        self, table: HistoryTable, age: float, limit: int, *, tenant: str | None = None
    ) -> sa.Select[Any]:
        """The statement picking (and locking) the rows of ``table`` (``tenant``'s only, when
        given) that are due among its ``limit`` oldest."""
        rows, when = self._history(table)
        oldest = (
            sa.select(rows.c.id)
            .where(*self._history_tenant(table, tenant))
            .order_by(rows.c.id)
            .limit(limit)
        )
        return self.sql.skip_locked(
            sa.select(rows.c.id).where(rows.c.id.in_(oldest), when < _age_cutoff(age)),
            of=rows,
        )

    def prune_history(
        self,
        table: HistoryTable,
        age: float,
        *,
        limit: int,
        exclusive: bool = False,
        tenant: str | None = None,
    ) -> int | None:
        """Delete audit rows (by ``created_at``) or schedule fires (by ``fire_at``) older than
        ``age`` seconds among the ``limit`` oldest ids (``tenant``'s only, when given; None:
        every tenant's), in one transaction; ``age`` 0 deletes nothing. None: another
        exclusive prune holds the lock.

        Ids grow with time, so the oldest ids hold the rows that are due: the pick reads at
        most ``limit`` rows of the primary key whether or not anything is due (a filter on
        the time column alone would walk the whole table each time nothing is). A row
        written out of time order (a catch-up fire) goes once the rows before it have gone.
        """
        if age <= 0:
            return 0
        rows, _ = self._history(table)
        pick = self.history_pick_statement(table, age, limit, tenant=tenant)
        with self.transaction() as conn:
            if exclusive and not self.sql.try_exclusive(conn, PRUNE_LOCK_KEY):
                return None
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return 0
            return int(
                conn.execute(sa.delete(rows).where(self.sql.one_of(rows.c.id, ids))).rowcount
            )

    def count_prunable_history(
        self, table: HistoryTable, age: float, *, tenant: str | None = None
    ) -> int:
        """How many rows :meth:`prune_history` would delete now."""
        if age <= 0:
            return 0
        rows, when = self._history(table)
        stmt = (
            sa.select(sa.func.count())
            .select_from(rows)
            .where(when < _age_cutoff(age), *self._history_tenant(table, tenant))
        )
        with self.connection() as conn:
            return int(conn.execute(stmt).scalar_one())

    @contextmanager
    def pruning_turn(self) -> Iterator[bool]:
        """Whether this process got the pruning turn, held until the block ends: a session
        lock on a connection of its own, so one worker of a fleet works a backlog off at a
        time (another one's :meth:`pruning_turn` yields False meanwhile). A worker that dies
        holding it loses it with its connection."""
        with self.engine.connect() as conn:
            held = self.sql.try_hold(conn, PRUNE_TURN_KEY)
            try:
                yield held
            finally:
                if held:
                    try:
                        self.sql.release(conn, PRUNE_TURN_KEY)
                    except Exception:  # the connection broke: its session and lock end with it
                        conn.invalidate()
                        raise

    def audit_prune(self, actor: Actor | None, details: dict[str, Any]) -> None:
        """Write the audit row of a prune someone asked for (action ``history.prune``)."""
        with self.transaction() as conn:
            write_audit(conn, actor, "history.prune", "history", [None], details)
