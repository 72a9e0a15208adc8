"""Changing finished or live tasks: cancelling and replaying."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from taskrt.db.types import db_now
from taskrt.exceptions import InvalidStateError, NotFoundError
from taskrt.ids import uuid7
from taskrt.records import DEFAULT_TENANT, LIVE_TASK_STATUSES, Actor, DispatchEntry, TaskRecord
from taskrt.store.audit import write_audit
from taskrt.store.base import RUNS, TASKS
from taskrt.store.next_runs import write_outbox
from taskrt.store.task_reads import TaskReadStore


class TaskChangeStore(TaskReadStore):
    """Statements cancelling and replaying tasks."""

    # --- cancel ---------------------------------------------------------------------------
    def cancel_task(
        self, task_id: uuid.UUID, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> tuple[TaskRecord, DispatchEntry | None]:
        """Cancel one of ``tenant``'s tasks (another tenant's is not found). A queued task is
        cancelled at once (its run too) and the run to withdraw from the queue is returned; a
        running one gets ``cancel_requested_at`` and its worker finishes the job. A finished
        task raises InvalidStateError."""
        withdrawn: DispatchEntry | None = None
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(TASKS.c.status)
                .where(TASKS.c.id == task_id, TASKS.c.tenant == tenant)
                .with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"no task with id {task_id}")
            status = row[0]
            if status not in LIVE_TASK_STATUSES:
                raise InvalidStateError(f"task {task_id} is already {status}; nothing to cancel")
            run = conn.execute(
                sa.update(RUNS)
                .where(RUNS.c.task_id == task_id, RUNS.c.status == "queued")
                .values(status="cancelled", finished_at=db_now(), outcome_reason="cancelled")
                .returning(RUNS.c.id, RUNS.c.queue_name, RUNS.c.available_at)
            ).first()
            values: dict[str, Any] = {"cancel_requested_at": db_now(), "updated_at": db_now()}
            if run is not None or status == "pending":
                values.update(status="cancelled", finished_at=db_now())
                if run is not None:
                    withdrawn = DispatchEntry(run_id=run[0], queue=run[1], tenant=tenant)
            conn.execute(sa.update(TASKS).where(TASKS.c.id == task_id).values(**values))
            write_audit(
                conn, actor, "task.cancel", "task", [task_id], {"was": status}, tenant=tenant
            )
        return self.get_task(task_id, tenant=tenant), withdrawn

    # --- replay ---------------------------------------------------------------------------
    def replay_tasks(
        self,
        queue: str | None,
        task_ids: Sequence[uuid.UUID],
        *,
        actor: Actor | None = None,
        statuses: Sequence[str] = ("failed",),
        action: str = "dlq.replay",
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[list[uuid.UUID], list[DispatchEntry]]:
        """Give finished tasks of ``tenant`` a fresh run and a fresh retry budget, each in its
        own queue (other tenants' ids are left alone, like ids not found).

        By default only tasks still ``failed`` (dead-lettered) are replayed, and only those of
        ``queue`` when it is given; ``statuses`` widens that (re-running a completed or
        cancelled task). The conditional UPDATE makes concurrent replays of one task create
        exactly one new run. Raises InvalidStateError when a re-run task's dedup key is held by
        another live task.
        """
        if not task_ids:
            return [], []
        conditions: list[sa.ColumnElement[bool]] = [
            TASKS.c.tenant == tenant,
            TASKS.c.id.in_(list(task_ids)),
            TASKS.c.status.in_(list(statuses)),
        ]
        if queue is not None:
            conditions.append(TASKS.c.queue_name == queue)
        with self.transaction() as conn:
            try:
                queue_of: dict[uuid.UUID, str] = dict(
                    conn.execute(
                        sa.update(TASKS)
                        .where(*conditions)
                        .values(
                            status="queued",
                            failure_reason=None,
                            finished_at=None,
                            retry_count=0,
                            lost_runs=0,
                            cancel_requested_at=None,
                            updated_at=db_now(),
                        )
                        .returning(TASKS.c.id, TASKS.c.queue_name)
                    ).all()
                )
            except sa.exc.IntegrityError:
                raise InvalidStateError(
                    "another live task holds the dedup key of a task to re-run; wait for it to "
                    "finish or cancel it"
                ) from None
            won = list(queue_of)
            if not won:
                return [], []
            attempts = dict(
                conn.execute(
                    sa.select(RUNS.c.task_id, sa.func.max(RUNS.c.attempt))
                    .where(RUNS.c.task_id.in_(won), RUNS.c.tenant == tenant)
                    .group_by(RUNS.c.task_id)
                ).all()
            )
            new_runs = [
                {
                    "id": uuid7(),
                    "task_id": task_id,
                    "tenant": tenant,
                    "attempt": attempts.get(task_id, 0) + 1,
                    "status": "queued",
                    "queue_name": queue_of[task_id],
                }
                for task_id in won
            ]
            rows = conn.execute(
                sa.insert(RUNS)
                .values(available_at=db_now())
                .returning(RUNS.c.id, RUNS.c.available_at, sort_by_parameter_order=True),
                new_runs,
            ).all()
            entries = [
                DispatchEntry(run_id=rid, queue=queue_of[task_id], tenant=tenant)
                for (rid, _at), task_id in zip(rows, won, strict=True)
            ]
            if self.outbox:
                write_outbox(
                    conn,
                    [
                        (e.run_id, e.tenant, e.queue, at)
                        for e, (_rid, at) in zip(entries, rows, strict=True)
                    ],
                )
            details = {"queue": queue} if queue is not None else {}
            write_audit(conn, actor, action, "task", won, details, tenant=tenant)
        return won, entries
