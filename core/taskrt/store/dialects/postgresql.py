"""PostgreSQL: the hot paths are one statement each, sent through psycopg directly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from taskrt.db import models
from taskrt.ids import uuid7
from taskrt.records import Actor, ClaimedRun, FinishReport, RunFinish, TaskInsert
from taskrt.store.batches import dumps, finish_row, insert_batch
from taskrt.store.dialects.base import Dialect, Placed, Reads, SqlAlchemyReads
from taskrt.store.executor import PsycopgExecutor, SqlExecutor
from taskrt.store.mappers import claimed_run, dispatch_entry
from taskrt.store.rules import task_outcome
from taskrt.store.sql import postgresql as statements


class PsycopgReads:
    """:class:`taskrt.store.dialects.base.Reads` through psycopg: SQLAlchemy's result set-up
    for these wide rows costs more than the statements themselves."""

    def __init__(self, raw: PsycopgExecutor) -> None:
        self.raw = raw

    def task(
        self, task_id: uuid.UUID, *, runs: bool, tenant: str
    ) -> tuple[Mapping[Any, Any] | None, list[Mapping[Any, Any]]]:
        """See :meth:`taskrt.store.dialects.base.Reads.task`."""
        params = {"id": task_id, "tenant": tenant}
        with self.raw.reader() as read:
            rows = read(statements.GET_TASK, params)
            if not rows:
                return None, []
            run_rows = read(statements.GET_RUNS, params) if runs else []
        return rows[0], list(run_rows)

    def api_key(self, prefix: str) -> Mapping[Any, Any] | None:
        """See :meth:`taskrt.store.dialects.base.Reads.api_key`."""
        rows = self.raw.rows(statements.API_KEY_BY_PREFIX, {"prefix": prefix})
        return rows[0] if rows else None


class _Claimer:
    """Claims on one psycopg connection in autocommit mode: each claim is one statement."""

    def __init__(self, raw: Any, params: dict[str, Any]) -> None:
        self.raw = raw
        self.params = params

    def by_ids(self, run_ids: Sequence[uuid.UUID]) -> list[ClaimedRun]:
        rows = self.raw.execute(statements.CLAIM_BY_IDS, {**self.params, "ids": list(run_ids)})
        return [claimed_run(row, self.params["lease_token"]) for row in rows.fetchall()]

    def next(self, tenant: str, queue: str, limit: int) -> list[ClaimedRun]:
        rows = self.raw.execute(
            statements.CLAIM_NEXT,
            {**self.params, "tenant": tenant, "queue": queue, "limit": limit},
        )
        return [claimed_run(row, self.params["lease_token"]) for row in rows.fetchall()]


class PostgresDialect(Dialect):
    """PostgreSQL (through psycopg)."""

    name = "postgresql"

    def __init__(self, sql: SqlExecutor, *, raw_reads: bool = True) -> None:
        self.raw = PsycopgExecutor(sql.engine)
        reads: Reads = PsycopgReads(self.raw) if raw_reads else SqlAlchemyReads(sql)
        super().__init__(sql, reads)

    # --- small differences ----------------------------------------------------------------
    def upsert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def skip_locked(self, stmt: sa.Select[Any], of: sa.Table) -> sa.Select[Any]:
        return stmt.with_for_update(of=of, skip_locked=True)

    def relax_commit(self, conn: Connection) -> None:
        conn.exec_driver_sql(statements.RELAX_COMMIT)

    def try_exclusive(self, conn: Connection, key: int) -> bool:
        return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar_one())

    def one_of(
        self, column: sa.ColumnElement[Any], values: Sequence[Any]
    ) -> sa.ColumnElement[bool]:
        array = postgresql.ARRAY(column.type)
        return column == sa.any_(sa.bindparam(None, list(values), type_=array))

    def delete_picked_tasks(
        self, conn: Connection, pick: sa.Select[Any]
    ) -> tuple[list[uuid.UUID], int]:
        # one statement, no ids sent to the database: the runs and outbox rows go by the
        # foreign keys' ON DELETE CASCADE, counted first from the same snapshot
        tasks, runs = models.tasks, models.task_runs
        picked = pick.cte("picked")
        counted = (
            sa.select(sa.func.count())
            .select_from(runs)
            .where(runs.c.task_id.in_(sa.select(picked.c.id)))
            .scalar_subquery()
        )
        gone = (
            sa.delete(tasks)
            .where(tasks.c.id.in_(sa.select(picked.c.id)))
            .returning(tasks.c.id)
            .cte("gone")
        )
        stmt = sa.select(gone.c.id, counted.label("runs"))
        rows = conn.execute(stmt).all()
        return [row.id for row in rows], int(rows[0].runs) if rows else 0

    def try_hold(self, conn: Connection, key: int) -> bool:
        held = conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one()
        conn.commit()  # end the implicit transaction; the session lock stays
        return bool(held)

    def release(self, conn: Connection, key: int) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
        conn.commit()

    def raw_statement(self, *, relaxed: bool = False) -> Any:
        return self.raw.statement(relaxed=relaxed)

    def dispose(self) -> None:
        self.raw.dispose()

    # --- hot paths ------------------------------------------------------------------------
    def insert_at_once(
        self, items: Sequence[TaskInsert], *, outbox: bool, actor: Actor | None
    ) -> Placed | None:
        if any(item.dedup_key is not None for item in items):
            return None
        # nothing can conflict: the one statement (with the audit rows, if any) is the whole
        # transaction, sent without BEGIN and COMMIT round trips
        params: dict[str, Any] = {"batch": insert_batch(items)}
        if actor is not None:
            params.update(actor=actor.name, request_id=actor.request_id, client_ip=actor.client_ip)
        statement = statements.insert_tasks(outbox=outbox, audited=actor is not None)
        with self.raw.statement() as raw:
            rows = raw.execute(statement, params).fetchall()
        return _placed(rows)

    def place_tasks(self, conn: Connection, items: Sequence[TaskInsert], *, outbox: bool) -> Placed:
        statement = statements.insert_tasks(outbox=outbox, audited=False)
        rows = conn.exec_driver_sql(statement, {"batch": insert_batch(items)}).all()
        return _placed(rows)

    @contextmanager
    def claimer(
        self, *, worker_id: uuid.UUID, lease_token: str, lease_ttl: float
    ) -> Iterator[_Claimer]:
        params = {"worker_id": worker_id, "lease_token": lease_token, "lease_ttl": float(lease_ttl)}
        with self.raw.statement(relaxed=True) as raw:
            yield _Claimer(raw, params)

    def renew_leases(
        self, run_ids: Sequence[uuid.UUID], *, worker_id: uuid.UUID, lease_ttl: float
    ) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        params = {"ids": list(run_ids), "worker_id": worker_id, "lease_ttl": float(lease_ttl)}
        with self.raw.statement(relaxed=True) as raw:
            rows = raw.execute(statements.RENEW_LEASES, params).fetchall()
        return {row[0] for row in rows}, {row[0] for row in rows if row[1]}

    def finish_runs(self, finishes: Sequence[RunFinish], *, outbox: bool) -> FinishReport:
        # the whole batch (runs, tasks, retries, outbox) in one statement
        batch = []
        for f in finishes:
            task_status, failure_reason = task_outcome(f)
            retrying = task_status == "retrying"
            if retrying and f.next_run_id is None:
                f.next_run_id = uuid7()
            batch.append(
                {
                    **finish_row(f, str(f.run.run_id)),
                    "next_run_id": str(f.next_run_id) if retrying else None,
                    "task_status": task_status,
                    "failure_reason": failure_reason,
                }
            )
        with self.raw.statement() as raw:
            rows = raw.execute(statements.finish_runs(outbox=outbox), {"batch": dumps(batch)})
            won = {row[0]: (row[1], row[2], row[3]) for row in rows.fetchall()}
        report = FinishReport()
        for f in finishes:
            if f.run.run_id not in won:
                report.fenced.append(f)
                continue
            report.won.append(f)
            next_id, available_at, tenant = won[f.run.run_id]
            if next_id is not None:
                immediate = (f.retry_delay or 0.0) <= 0
                report.retries.append(
                    dispatch_entry(next_id, f.run.queue, available_at, immediate, tenant=tenant)
                )
        return report


def _placed(rows: Sequence[Any]) -> Placed:
    return {row[0]: (row[1], row[2]) if row[1] is not None else None for row in rows}
