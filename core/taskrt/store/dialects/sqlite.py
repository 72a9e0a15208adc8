"""SQLite: the hot paths take a few statements each, in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from taskrt.db import models
from taskrt.db.types import db_now
from taskrt.ids import uuid7
from taskrt.records import Actor, ClaimedRun, DispatchEntry, FinishReport, RunFinish, TaskInsert
from taskrt.store.batches import dumps, finish_row
from taskrt.store.dialects.base import Dialect, Placed, SqlAlchemyReads
from taskrt.store.executor import SqlExecutor
from taskrt.store.mappers import claimed_run
from taskrt.store.next_runs import insert_next_runs
from taskrt.store.rules import task_outcome
from taskrt.store.sql import sqlite as statements

_TASKS = models.tasks


class _Claimer:
    """Claims in one transaction: the runs' update, then their tasks' update."""

    def __init__(self, conn: Connection, params: dict[str, Any]) -> None:
        self.conn = conn
        self.params = params

    def by_ids(self, run_ids: Sequence[uuid.UUID]) -> list[ClaimedRun]:
        return self._with_tasks(
            self.conn.execute(statements.CLAIM_BY_IDS, {**self.params, "ids": list(run_ids)})
        )

    def next(self, tenant: str, queue: str, limit: int) -> list[ClaimedRun]:
        return self._with_tasks(
            self.conn.execute(
                statements.CLAIM_NEXT,
                {**self.params, "of_tenant": tenant, "queue": queue, "limit": limit},
            )
        )

    def _with_tasks(self, result: Any) -> list[ClaimedRun]:
        runs = result.all()
        if not runs:
            return []
        tasks = {
            row[0]: tuple(row[1:])
            for row in self.conn.execute(
                statements.CLAIM_TASKS, {"task_ids": [run.task_id for run in runs]}
            )
        }
        token = self.params["lease_token"]
        return [claimed_run((*run, *tasks[run.task_id]), token) for run in runs]


class SqliteDialect(Dialect):
    """SQLite (through SQLAlchemy)."""

    name = "sqlite"

    def __init__(self, sql: SqlExecutor) -> None:
        super().__init__(sql, SqlAlchemyReads(sql))

    # --- small differences ----------------------------------------------------------------
    def upsert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def skip_locked(self, stmt: sa.Select[Any], of: sa.Table) -> sa.Select[Any]:
        return stmt  # writers are serialized (BEGIN IMMEDIATE): nothing to skip

    def relax_commit(self, conn: Connection) -> None:
        pass  # every commit waits for the disk

    def dispose(self) -> None:
        pass  # the store's engine is the only pool

    # --- hot paths ------------------------------------------------------------------------
    def insert_at_once(
        self, items: Sequence[TaskInsert], *, outbox: bool, actor: Actor | None
    ) -> Placed | None:
        return None  # no data-modifying CTEs: always the transaction

    def place_tasks(self, conn: Connection, items: Sequence[TaskInsert], *, outbox: bool) -> Placed:
        return {}  # the caller inserts them all, statement by statement

    @contextmanager
    def claimer(
        self, *, worker_id: uuid.UUID, lease_token: str, lease_ttl: float
    ) -> Iterator[_Claimer]:
        params = {"worker_id": worker_id, "lease_token": lease_token, "lease_ttl": float(lease_ttl)}
        with self.executor.transaction() as conn:
            yield _Claimer(conn, params)

    def renew_leases(
        self, run_ids: Sequence[uuid.UUID], *, worker_id: uuid.UUID, lease_ttl: float
    ) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        ids = list(run_ids)
        params = {"ids": ids, "owner": worker_id, "lease_ttl": float(lease_ttl)}
        with self.executor.transaction() as conn:
            ours = {row[0] for row in conn.execute(statements.RENEW_LEASES, params)}
            cancel = {row[0] for row in conn.execute(statements.CANCEL_REQUESTED, {"ids": ids})}
        return ours, cancel

    def finish_runs(self, finishes: Sequence[RunFinish], *, outbox: bool) -> FinishReport:
        report = FinishReport()
        with self.executor.transaction() as conn:
            # run ids as SQLite stores them: 32 hex digits
            batch = [finish_row(f, f.run.run_id.hex) for f in finishes]
            rows = conn.execute(statements.FINISH_RUNS, {"batch": dumps(batch)}).all()
            won_ids = {
                row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(row[0]) for row in rows
            }
            for finish in finishes:
                (report.won if finish.run.run_id in won_ids else report.fenced).append(finish)
            if report.won:
                report.retries = _apply_task_outcomes(conn, report.won, outbox=outbox)
        return report


def _apply_task_outcomes(
    conn: Connection, won: Sequence[RunFinish], *, outbox: bool
) -> list[DispatchEntry]:
    """Update the tasks of the runs that won, grouped by their new status, and create the next
    run of each retry."""
    groups: dict[tuple[str, str | None], list[uuid.UUID]] = {}
    retries: list[RunFinish] = []
    for f in won:
        outcome = task_outcome(f)
        if outcome[0] == "retrying":
            retries.append(f)
        else:
            groups.setdefault(outcome, []).append(f.run.task_id)
    for (status, reason), task_ids in groups.items():
        conn.execute(
            sa.update(_TASKS)
            .where(_TASKS.c.id.in_(task_ids))
            .values(status=status, failure_reason=reason, finished_at=db_now(), updated_at=db_now())
        )
    if not retries:
        return []
    conn.execute(
        sa.update(_TASKS)
        .where(_TASKS.c.id.in_([f.run.task_id for f in retries]))
        .values(status="retrying", retry_count=_TASKS.c.retry_count + 1, updated_at=db_now())
    )
    return insert_next_runs(
        conn,
        [(f.next_run_id or uuid7(), f.run, float(f.retry_delay or 0.0)) for f in retries],
        outbox=outbox,
    )
