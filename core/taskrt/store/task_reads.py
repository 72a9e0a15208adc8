"""Reading tasks and their runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskrt.db.types import UTCDateTime
from taskrt.exceptions import NotFoundError
from taskrt.records import DEFAULT_TENANT, RunRecord, TaskRecord, address, split_address
from taskrt.store.base import RUNS, TASKS, StoreBase
from taskrt.store.mappers import run_from_row, task_from_row, task_with_latest_run
from taskrt.store.search import TaskSearch, search_statement


class TaskReadStore(StoreBase):
    """Statements reading tasks."""

    def get_task(
        self, task_id: uuid.UUID, *, runs: bool = True, tenant: str = DEFAULT_TENANT
    ) -> TaskRecord:
        """``tenant``'s task and (by default) all its runs, oldest first; NotFoundError if
        unknown or another tenant's."""
        row, run_rows = self.sql.reads.task(task_id, runs=runs, tenant=tenant)
        if row is None:
            raise NotFoundError(f"no task with id {task_id}")
        return task_from_row(row, [run_from_row(r) for r in run_rows])

    def get_tasks(
        self, task_ids: Sequence[uuid.UUID], *, tenant: str = DEFAULT_TENANT
    ) -> dict[uuid.UUID, TaskRecord]:
        """Several of ``tenant``'s tasks by id (without runs); unknown ids (and other
        tenants') are left out."""
        if not task_ids:
            return {}
        stmt = sa.select(TASKS).where(TASKS.c.id.in_(task_ids), TASKS.c.tenant == tenant)
        with self.connection() as conn:
            rows = conn.execute(stmt).mappings()
            return {row["id"]: task_from_row(row) for row in rows}

    def latest_runs(
        self, task_ids: Sequence[uuid.UUID], *, tenant: str = DEFAULT_TENANT
    ) -> dict[uuid.UUID, RunRecord]:
        """The newest run of each of ``tenant``'s tasks (other tenants' are left out)."""
        if not task_ids:
            return {}
        newest = (
            sa.select(RUNS.c.task_id, sa.func.max(RUNS.c.attempt).label("attempt"))
            .where(RUNS.c.task_id.in_(task_ids), RUNS.c.tenant == tenant)
            .group_by(RUNS.c.task_id)
            .subquery()
        )
        stmt = sa.select(RUNS).join(
            newest, sa.and_(RUNS.c.task_id == newest.c.task_id, RUNS.c.attempt == newest.c.attempt)
        )
        with self.connection() as conn:
            return {row["task_id"]: run_from_row(row) for row in conn.execute(stmt).mappings()}

    def list_tasks(
        self,
        search: TaskSearch | None = None,
        *,
        limit: int = 50,
        before: uuid.UUID | None = None,
        **filters: Any,
    ) -> list[TaskRecord]:
        """Tasks newest first matching ``search`` and/or the :class:`TaskSearch` fields given
        as keywords (``status="failed", queue="emails"``, ``tenant="acme"``: the default
        tenant's otherwise); ``before`` is the keyset cursor (the last id of the previous
        page). Schedule templates are left out unless ``kind`` asks."""
        search = replace(search or TaskSearch(), **filters)
        stmt = search_statement(search, limit=limit, before=before)
        with self.connection() as conn:
            return [task_from_row(row) for row in conn.execute(stmt).mappings()]

    def failed_task_ids(
        self,
        queue: str,
        *,
        limit: int = 1000,
        after: uuid.UUID | None = None,
        finished_before: datetime | None = None,
        finished_after: datetime | None = None,
    ) -> list[uuid.UUID]:
        """Ids of failed (dead-lettered) tasks of the address ``queue``, oldest first,
        keyset-paginated."""
        tenant, name = split_address(queue)
        stmt = (
            sa.select(TASKS.c.id)
            .where(TASKS.c.tenant == tenant, TASKS.c.queue_name == name, TASKS.c.status == "failed")
            .order_by(TASKS.c.id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(TASKS.c.id > after)
        if finished_before is not None:
            stmt = stmt.where(
                TASKS.c.finished_at < sa.bindparam("fb", finished_before, type_=UTCDateTime())
            )
        if finished_after is not None:
            stmt = stmt.where(
                TASKS.c.finished_at >= sa.bindparam("fa", finished_after, type_=UTCDateTime())
            )
        with self.connection() as conn:
            return [row[0] for row in conn.execute(stmt)]

    def failed_queue_names(self) -> list[str]:
        """Addresses of the queues (every tenant's) holding dead-lettered tasks."""
        with self.connection() as conn:
            return [
                address(row[0], row[1])
                for row in conn.execute(
                    sa.select(TASKS.c.tenant, TASKS.c.queue_name)
                    # finished_at is set on every failed task: this reads the partial index
                    # (status, finished_at), whichever tenant the tasks are
                    .where(TASKS.c.status == "failed", TASKS.c.finished_at.is_not(None))
                    .distinct()
                )
            ]

    def dead_letters(
        self,
        queue: str,
        *,
        limit: int = 50,
        before: uuid.UUID | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[TaskRecord]:
        """Failed tasks of ``tenant``'s ``queue``, newest first, with their latest run."""
        tasks = self.list_tasks(
            status="failed", queue=queue, limit=limit, before=before, tenant=tenant
        )
        latest = self.latest_runs([t.id for t in tasks], tenant=tenant)
        return [task_with_latest_run(t, latest.get(t.id)) for t in tasks]
