"""Creating tasks with their first runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from taskrt.db.types import UTCDateTime, db_now_plus
from taskrt.exceptions import InvalidStateError
from taskrt.records import LIVE_TASK_STATUSES, Actor, Enqueued, TaskInsert, TaskKind
from taskrt.store.audit import write_audit
from taskrt.store.base import RUNS, TASKS
from taskrt.store.batches import task_row
from taskrt.store.mappers import dispatch_entry, run_from_row, task_from_row
from taskrt.store.next_runs import write_outbox
from taskrt.store.quotas import Quota, QuotaStore

_LIVE_DEDUP = sa.text(
    "dedup_key IS NOT NULL AND status IN (" + ", ".join(f"'{s}'" for s in LIVE_TASK_STATUSES) + ")"
)
_RUN_AVAILABLE_AT = sa.func.coalesce(
    sa.bindparam("due_at", type_=UTCDateTime()),
    db_now_plus(sa.bindparam("delay_s", type_=sa.Float())),
)
_INSERT_FIRST_RUNS = (
    sa.insert(RUNS)
    .values(available_at=_RUN_AVAILABLE_AT)
    .returning(RUNS.c.id, RUNS.c.available_at, sort_by_parameter_order=True)
)


def _created(item: TaskInsert, placed: tuple[uuid.UUID, datetime] | None) -> Enqueued:
    if placed is None:
        return Enqueued(task_id=item.id, created=True)
    run_id, available_at = placed
    immediate = item.run_at is None and item.delay <= 0
    return Enqueued(
        task_id=item.id,
        created=True,
        dispatch=dispatch_entry(run_id, item.queue, available_at, immediate, tenant=item.tenant),
    )


class TaskStore(QuotaStore):
    """Statements creating tasks."""

    def insert_tasks(
        self,
        items: Sequence[TaskInsert],
        *,
        actor: Actor | None = None,
        quota: Quota | None = None,
    ) -> list[Enqueued]:
        """Store tasks with their first runs (and outbox and audit rows) in one transaction.

        A task whose dedup key is held by a live task of the same name is not created; the
        live task is returned instead (``created=False``). The unique partial index makes this
        race-free: concurrent producers queue on it and all but one find the winner.
        ``quota``: the tenant's quotas, checked first in the same transaction (S4,
        :mod:`taskrt.store.quotas`); without one, the one-statement fast path.
        """
        if quota is not None:
            with self.transaction() as conn:
                return self.insert_tasks_in(conn, items, actor=actor, quota=quota)
        placed = self.sql.insert_at_once(items, outbox=self.outbox, actor=actor)
        if placed is not None:
            return [_created(item, placed[item.id]) for item in items]
        with self.transaction() as conn:
            return self.insert_tasks_in(conn, items, actor=actor)

    def insert_tasks_in(
        self,
        conn: Connection,
        items: Sequence[TaskInsert],
        *,
        actor: Actor | None = None,
        quota: Quota | None = None,
    ) -> list[Enqueued]:
        """:meth:`insert_tasks` inside the caller's transaction."""
        if quota is not None:
            self.check_quota(conn, quota, sum(1 for i in items if i.tenant == quota.tenant))
        placed = self.sql.place_tasks(conn, items, outbox=self.outbox)
        results: list[Enqueued | None] = [
            _created(item, placed[item.id]) if item.id in placed else None for item in items
        ]
        pending = [i for i, result in enumerate(results) if result is None]
        created: list[int] = []
        for _round in range(5):
            if not pending:
                break
            inserted = self._insert_ignoring_live_duplicates(
                conn, [task_row(items[i]) for i in pending]
            )
            retry_next: list[int] = []
            for i in pending:
                item = items[i]
                if item.id in inserted:
                    created.append(i)
                    continue
                assert item.dedup_key is not None  # only a dedup key can conflict
                live = self._live_task_for(conn, item.tenant, item.name, item.dedup_key)
                if live is None:  # the holder finished between our insert and this read
                    retry_next.append(i)
                else:
                    results[i] = Enqueued(task_id=live["id"], created=False)
            pending = retry_next
        if pending:
            raise InvalidStateError("could not settle a dedup race after 5 rounds; try again")
        if created:
            self._insert_first_runs(conn, items, created, results)
        new_tasks = [i for i, r in enumerate(results) if r is not None and r.created]
        by_tenant: dict[str, list[int]] = {}
        for i in new_tasks:
            by_tenant.setdefault(items[i].tenant, []).append(i)
        for tenant, indexes in by_tenant.items():
            write_audit(
                conn,
                actor,
                "task.create",
                "task",
                [items[i].id for i in indexes],
                [{"name": items[i].name, "queue": items[i].queue} for i in indexes],
                tenant=tenant,
            )
        return [r for r in results if r is not None]

    def _insert_ignoring_live_duplicates(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> set[uuid.UUID]:
        stmt = (
            self.sql.upsert(TASKS)
            .on_conflict_do_nothing(
                index_elements=["tenant", "name", "dedup_key"], index_where=_LIVE_DEDUP
            )
            .returning(TASKS.c.id)
        )
        return {row[0] for row in conn.execute(stmt, rows)}

    def _live_task_for(
        self, conn: Connection, tenant: str, name: str, dedup_key: str
    ) -> RowMapping | None:
        # the dedup winner is a live task of the caller's tenant: keys are unique per tenant
        stmt = sa.select(TASKS.c.id, TASKS.c.queue_name).where(
            TASKS.c.tenant == tenant,
            TASKS.c.name == name,
            TASKS.c.dedup_key == dedup_key,
            TASKS.c.status.in_(LIVE_TASK_STATUSES),
        )
        return conn.execute(stmt).mappings().first()

    def _insert_first_runs(
        self,
        conn: Connection,
        items: Sequence[TaskInsert],
        created: list[int],
        results: list[Enqueued | None],
    ) -> None:
        runnable = [i for i in created if items[i].kind == TaskKind.IMMEDIATE]
        for i in created:
            results[i] = Enqueued(task_id=items[i].id, created=True)
        if not runnable:
            return
        rows = conn.execute(
            _INSERT_FIRST_RUNS,
            [
                {
                    "id": items[i].run_id,
                    "task_id": items[i].id,
                    "tenant": items[i].tenant,
                    "attempt": 1,
                    "status": "queued",
                    "queue_name": items[i].queue,
                    "due_at": items[i].run_at,
                    "delay_s": float(items[i].delay),
                }
                for i in runnable
            ],
        ).all()
        for i, (run_id, available_at) in zip(runnable, rows, strict=True):
            item = items[i]
            immediate = item.run_at is None and item.delay <= 0
            entry = dispatch_entry(run_id, item.queue, available_at, immediate, tenant=item.tenant)
            results[i] = Enqueued(task_id=item.id, created=True, dispatch=entry)
        if self.outbox:
            write_outbox(
                conn,
                [
                    (run_id, items[i].tenant, items[i].queue, at)
                    for i, (run_id, at) in zip(runnable, rows, strict=True)
                ],
            )


__all__ = ["TaskStore", "dispatch_entry", "run_from_row", "task_from_row"]
