"""Reaping and reconciling: what the store says about runs a queue backend holds, and ending
runs whose worker stopped renewing their lease."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskrt.db.types import UTCDateTime, db_now
from taskrt.ids import uuid7
from taskrt.records import DispatchEntry, LostRun, RunState, address, split_address
from taskrt.store.base import RUNS, TASKS, StoreBase
from taskrt.store.mappers import run_state
from taskrt.store.next_runs import insert_next_runs
from taskrt.store.rules import LOST_ALONE, LOST_WITH_OTHERS


@dataclass(frozen=True, slots=True)
class ReconcileCounts:
    """What the reconciler compares with Redis's counts for one queue."""

    queued: int
    queued_settled: int
    failed: int
    failed_settled: int


RUN_STATE_COLUMNS = (
    RUNS.c.id,
    RUNS.c.task_id,
    RUNS.c.status,
    RUNS.c.queue_name,
    RUNS.c.attempt,
    RUNS.c.lease_token,
    RUNS.c.available_at,
    RUNS.c.tenant,
)


class ReapStore(StoreBase):
    """Statements about runs to reap and reconcile."""

    # --- reaping and reconciling ----------------------------------------------------------
    def run_states(self, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RunState]:
        """The store's view of ``run_ids`` (unknown ids are left out)."""
        if not run_ids:
            return {}
        expired = sa.case((RUNS.c.lease_expires_at < db_now(), True), else_=False)
        stmt = sa.select(*RUN_STATE_COLUMNS, expired.label("lease_expired")).where(
            RUNS.c.id.in_(list(run_ids))
        )
        with self.connection() as conn:
            return {row.id: run_state(row, bool(row.lease_expired)) for row in conn.execute(stmt)}

    def mark_lost(self, states: Sequence[RunState], *, poison_budget: int) -> list[LostRun]:
        """End expired running runs as ``lost`` (only if their lease is still expired and the
        token unchanged) and create the next run, or dead-letter the task once it has lost
        ``poison_budget`` runs while executing alone. Only the winner of each conditional
        UPDATE acts.

        A worker that dies may hold several runs, and any of them may have killed it, so a
        lost run is charged to the poison budget only if its worker had started it alone
        (``isolated_at`` set); otherwise it is not charged and its next run is ``suspect``:
        a worker executes it with no other run beside it, so that if it kills that worker
        too, it alone is to blame. A run lost while alone stays suspect for its next run."""
        results: list[LostRun] = []
        with self.transaction() as conn:
            for state in states:
                won = conn.execute(
                    sa.update(RUNS)
                    .where(
                        RUNS.c.id == state.run_id,
                        RUNS.c.status == "running",
                        RUNS.c.lease_token == state.lease_token,
                        RUNS.c.lease_expires_at < db_now(),
                    )
                    .values(
                        status="lost",
                        finished_at=db_now(),
                        outcome_reason="lease_expired",
                        error_type="LeaseExpired",
                        error_message=sa.case(
                            (RUNS.c.isolated_at.is_not(None), LOST_ALONE),
                            else_=LOST_WITH_OTHERS,
                        ),
                        lease_expires_at=None,
                    )
                    .returning(RUNS.c.id, RUNS.c.isolated_at)
                ).first()
                if won is None:
                    continue
                charged = won.isolated_at is not None
                task = conn.execute(
                    sa.update(TASKS)
                    .where(TASKS.c.id == state.task_id)
                    .values(
                        lost_runs=TASKS.c.lost_runs + (1 if charged else 0),
                        updated_at=db_now(),
                    )
                    .returning(
                        TASKS.c.lost_runs,
                        TASKS.c.name,
                        TASKS.c.cancel_requested_at,
                        TASKS.c.trace_id,
                    )
                ).one()
                entry: DispatchEntry | None = None
                if task.cancel_requested_at is not None:
                    outcome = "cancelled"
                    task_values: dict[str, Any] = {"status": "cancelled", "finished_at": db_now()}
                elif task.lost_runs >= poison_budget:
                    outcome = "dead_letter"
                    task_values = {
                        "status": "failed",
                        "failure_reason": "lost",
                        "finished_at": db_now(),
                    }
                else:
                    outcome = "retry"
                    task_values = {"status": "retrying"}
                conn.execute(
                    sa.update(TASKS).where(TASKS.c.id == state.task_id).values(**task_values)
                )
                if outcome == "retry":
                    (entry,) = insert_next_runs(
                        conn, [(uuid7(), _StubRun(state), 0.0)], outbox=self.outbox, suspect=True
                    )
                results.append(
                    LostRun(
                        state.run_id,
                        state.task_id,
                        task.name,
                        state.queue,
                        state.attempt,
                        entry,
                        outcome,
                        task.trace_id,
                        charged=charged,
                        tenant=state.tenant,
                    )
                )
        return results

    def queued_runs(
        self,
        queue: str,
        *,
        enqueued_before: datetime,
        limit: int = 10_000,
        after: uuid.UUID | None = None,
    ) -> list[tuple[uuid.UUID, datetime]]:
        """Queued runs of the address ``queue`` older than ``enqueued_before``:
        (id, available_at), by id."""
        tenant, name = split_address(queue)
        stmt = (
            sa.select(RUNS.c.id, RUNS.c.available_at)
            .where(
                RUNS.c.tenant == tenant,
                RUNS.c.queue_name == name,
                RUNS.c.status == "queued",
                RUNS.c.enqueued_at < sa.bindparam("before", enqueued_before, type_=UTCDateTime()),
            )
            .order_by(RUNS.c.id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(RUNS.c.id > after)
        with self.connection() as conn:
            return [(row[0], row[1]) for row in conn.execute(stmt)]

    def reconcile_counts(self, queue: str, settled_before: datetime) -> ReconcileCounts:
        """Queued and failed counts of the address ``queue``, in total and older than
        ``settled_before``."""
        tenant, name = split_address(queue)
        before = sa.bindparam("before", settled_before, type_=UTCDateTime())
        with self.connection() as conn:
            queued, queued_settled = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(RUNS.c.enqueued_at < before),
                ).where(
                    RUNS.c.tenant == tenant, RUNS.c.queue_name == name, RUNS.c.status == "queued"
                )
            ).one()
            failed, failed_settled = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(TASKS.c.finished_at < before),
                ).where(
                    TASKS.c.tenant == tenant, TASKS.c.queue_name == name, TASKS.c.status == "failed"
                )
            ).one()
        return ReconcileCounts(int(queued), int(queued_settled), int(failed), int(failed_settled))

    def queued_queue_names(self) -> list[str]:
        """Addresses of the queues (every tenant's) that have queued or running runs in the
        store."""
        with self.connection() as conn:
            return [
                address(row[0], row[1])
                for row in conn.execute(
                    sa.select(RUNS.c.tenant, RUNS.c.queue_name)
                    .where(RUNS.c.status.in_(("queued", "running")))
                    .distinct()
                )
            ]


@dataclass(frozen=True, slots=True)
class _StubRun:
    """The fields of a run that creating its successor needs."""

    state: RunState

    @property
    def task_id(self) -> uuid.UUID:
        return self.state.task_id

    @property
    def attempt(self) -> int:
        return self.state.attempt

    @property
    def queue(self) -> str:
        return self.state.queue

    @property
    def tenant(self) -> str:
        return self.state.tenant
