"""The hot path: claiming runs, renewing leases and writing outcomes, each in batches and each
fenced by the run's lease token (docs/design/decisions.md, decision 25)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskrt.db.types import UTCDateTime, db_now, db_now_plus
from taskrt.ids import uuid7
from taskrt.records import (
    ClaimedRun,
    DispatchEntry,
    FinishReport,
    LostRun,
    RunFinish,
    RunState,
)
from taskrt.store.base import OUTBOX, RUNS, TASKS, StoreBase, dumps
from taskrt.store.claims import CLAIM_BY_IDS_PG, claim, claimed_from_tuple
from taskrt.store.tasks import dispatch_entry

_FINISH_SQLITE = sa.text(
    """
    UPDATE task_runs SET
        status = v.status,
        started_at = strftime('%Y-%m-%d %H:%M:%f000', task_runs.started_at,
            printf('%+.3f seconds', coalesce(v.start_delay, 0))),
        finished_at = strftime('%Y-%m-%d %H:%M:%f000', 'now'),
        result = v.result_json,
        error_type = v.error_type,
        error_message = v.error_message,
        error_traceback = v.error_traceback,
        outcome_reason = v.reason,
        next_retry_at = CASE WHEN v.delay IS NULL THEN NULL
            ELSE strftime('%Y-%m-%d %H:%M:%f000', 'now', printf('%+.3f seconds', v.delay)) END,
        lease_expires_at = NULL
    FROM (
        SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.token') AS token,
               json_extract(value, '$.status') AS status,
               json_extract(value, '$.result_json') AS result_json,
               json_extract(value, '$.error_type') AS error_type,
               json_extract(value, '$.error_message') AS error_message,
               json_extract(value, '$.error_traceback') AS error_traceback,
               json_extract(value, '$.reason') AS reason, json_extract(value, '$.delay') AS delay,
               json_extract(value, '$.start_delay') AS start_delay
        FROM json_each(:batch)
    ) AS v
    WHERE task_runs.id = v.id AND task_runs.status = 'running' AND task_runs.lease_token = v.token
    RETURNING task_runs.id
    """
)


_FINISH_ALL_PG_TEMPLATE = """
WITH v AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(CAST(%(batch)s AS jsonb)) AS v(
        id uuid, token text, status text, result_json text, error_type text,
        error_message text, error_traceback text, reason text, delay float8,
        next_run_id uuid, task_status text, failure_reason text, start_delay float8)
),
done AS (
    UPDATE task_runs AS r SET
        status = v.status,
        started_at = r.started_at + make_interval(secs => coalesce(v.start_delay, 0)),
        finished_at = statement_timestamp(),
        result = CAST(v.result_json AS jsonb),
        error_type = v.error_type,
        error_message = v.error_message,
        error_traceback = v.error_traceback,
        outcome_reason = v.reason,
        next_retry_at = CASE WHEN v.delay IS NULL THEN NULL
            ELSE statement_timestamp() + make_interval(secs => v.delay) END,
        lease_expires_at = NULL
    FROM v
    WHERE r.id = v.id AND r.status = 'running' AND r.lease_token = v.token
    RETURNING r.id, r.task_id, r.attempt, r.queue_name
),
task_rows AS (
    UPDATE tasks AS t SET
        status = v.task_status,
        failure_reason = v.failure_reason,
        finished_at = CASE WHEN v.task_status = 'retrying' THEN NULL
            ELSE statement_timestamp() END,
        retry_count = t.retry_count + CASE WHEN v.task_status = 'retrying' THEN 1 ELSE 0 END,
        updated_at = statement_timestamp()
    FROM done JOIN v ON v.id = done.id
    WHERE t.id = done.task_id
),
next_runs AS (
    INSERT INTO task_runs (id, task_id, attempt, status, queue_name, available_at)
    SELECT v.next_run_id, done.task_id, done.attempt + 1, 'queued', done.queue_name,
        statement_timestamp() + make_interval(secs => coalesce(v.delay, 0))
    FROM done JOIN v ON v.id = done.id
    WHERE v.next_run_id IS NOT NULL
    RETURNING id, queue_name, available_at
){outbox}
SELECT done.id, next_runs.id, next_runs.available_at
FROM done JOIN v ON v.id = done.id LEFT JOIN next_runs ON next_runs.id = v.next_run_id
"""
_FINISH_OUTBOX_CTE = """,
outbox_rows AS (
    INSERT INTO outbox (run_id, queue_name, available_at)
    SELECT id, queue_name, available_at FROM next_runs
)"""
# run through psycopg directly (StoreBase.raw_statement): %(name)s placeholders
_FINISH_ALL_PG = _FINISH_ALL_PG_TEMPLATE.format(outbox="")
_FINISH_ALL_PG_OUTBOX = _FINISH_ALL_PG_TEMPLATE.format(outbox=_FINISH_OUTBOX_CTE)


# one statement: extend this worker's leases and say which of them were asked to cancel
_RENEW_PG = """
WITH renewed AS (
    UPDATE task_runs SET
        lease_expires_at = statement_timestamp() + make_interval(secs => %(lease_ttl)s)
    FROM unnest(%(ids)s::uuid[]) AS mine(id)
    WHERE task_runs.id = mine.id AND task_runs.status = 'running'
        AND task_runs.worker_id = %(worker_id)s
    RETURNING task_runs.id, task_runs.task_id
)
SELECT renewed.id, tasks.cancel_requested_at IS NOT NULL
FROM renewed JOIN tasks ON tasks.id = renewed.task_id
"""


LOST_ALONE = (
    "the worker stopped renewing its lease (crashed, killed or frozen) while this run was "
    "the only one it executed; charged to the poison budget"
)
LOST_WITH_OTHERS = (
    "the worker stopped renewing its lease (crashed, killed or frozen) while it held other "
    "runs too; not charged to the poison budget: the next run executes alone"
)


def task_outcome(finish: RunFinish) -> tuple[str, str | None]:
    """The task's new status (and failure reason) after ``finish`` is written."""
    if finish.status == "succeeded":
        return "completed", None
    if finish.status == "cancelled":
        return "cancelled", None
    if finish.retry_delay is not None:
        return "retrying", None
    return "failed", finish.reason or "retries_exhausted"


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
)


def run_state(row: Any, lease_expired: bool) -> RunState:
    """A RunState from a row of RUN_STATE_COLUMNS."""
    return RunState(
        run_id=row.id,
        task_id=row.task_id,
        status=row.status,
        queue=row.queue_name,
        attempt=row.attempt,
        lease_token=row.lease_token,
        lease_expired=lease_expired,
        available_at=row.available_at,
    )


def _finish_row(finish: RunFinish, run_id: str) -> dict[str, Any]:
    """One outcome as a row of the finish statements' JSON batch (both dialects)."""
    return {
        "id": run_id,
        "token": finish.run.lease_token,
        "status": finish.status,
        "result_json": dumps(finish.result),
        "error_type": finish.error_type,
        "error_message": finish.error_message,
        "error_traceback": finish.error_traceback,
        "reason": finish.reason,
        "delay": finish.retry_delay,
        "start_delay": finish.start_delay,
    }


class RunStore(StoreBase):
    """Statements about runs."""

    # --- claim ----------------------------------------------------------------------------
    def claim_runs(
        self,
        run_ids: Sequence[uuid.UUID],
        *,
        worker_id: uuid.UUID,
        lease_token: str,
        lease_ttl: float,
    ) -> list[ClaimedRun]:
        """Claim queued runs for a worker in one transaction; runs no longer queued (cancelled,
        duplicates, already claimed) are left out of the result."""
        if not run_ids:
            return []
        if self.is_postgresql:
            params = {
                "ids": list(run_ids),
                "worker_id": worker_id,
                "lease_token": lease_token,
                "lease_ttl": float(lease_ttl),
            }
            with self.raw_statement(relaxed=True) as raw:
                rows = raw.execute(CLAIM_BY_IDS_PG, params).fetchall()
            claimed = [claimed_from_tuple(row, lease_token) for row in rows]
        else:
            with self.single_statement() as conn:
                claimed = claim(
                    conn,
                    "ids",
                    {"ids": list(run_ids)},
                    is_postgresql=False,
                    worker_id=worker_id,
                    lease_token=lease_token,
                    lease_ttl=lease_ttl,
                )
        order = {run_id: i for i, run_id in enumerate(run_ids)}
        return sorted(claimed, key=lambda run: order[run.run_id])  # the fetch (priority) order

    # --- renew ----------------------------------------------------------------------------
    def renew_leases(
        self, run_ids: Sequence[uuid.UUID], *, worker_id: uuid.UUID, lease_ttl: float
    ) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        """Extend this worker's leases; return (runs still ours, runs asked to cancel)."""
        if not run_ids:
            return set(), set()
        if self.is_postgresql:
            params = {
                "ids": list(run_ids),
                "worker_id": worker_id,
                "lease_ttl": float(lease_ttl),
            }
            with self.raw_statement(relaxed=True) as raw:
                rows = raw.execute(_RENEW_PG, params).fetchall()
            return {row[0] for row in rows}, {row[0] for row in rows if row[1]}
        with self.transaction() as conn:
            ours = {
                row[0]
                for row in conn.execute(
                    sa.update(RUNS)
                    .where(
                        RUNS.c.id.in_(list(run_ids)),
                        RUNS.c.status == "running",
                        RUNS.c.worker_id == worker_id,
                    )
                    .values(lease_expires_at=db_now_plus(sa.literal(lease_ttl, sa.Float())))
                    .returning(RUNS.c.id)
                )
            }
            cancel = {
                row[0]
                for row in conn.execute(
                    sa.select(RUNS.c.id)
                    .join(TASKS, TASKS.c.id == RUNS.c.task_id)
                    .where(RUNS.c.id.in_(list(run_ids)), TASKS.c.cancel_requested_at.is_not(None))
                )
            }
        return ours, cancel

    # --- finish ---------------------------------------------------------------------------
    def finish_runs(self, finishes: Sequence[RunFinish], *, with_outbox: bool) -> FinishReport:
        """Write a batch of outcomes in one transaction.

        Each run's UPDATE is fenced by (id, status 'running', lease token); a fenced run is
        reported in ``fenced`` and changes nothing, and never blocks the others of the batch.
        Winners update their tasks: completed, cancelled, failed (dead-lettered) or retrying
        with a new queued run.
        """
        report = FinishReport()
        if not finishes:
            return report
        if self.is_postgresql:
            report = self._finish_runs_pg(finishes, with_outbox)
        else:
            with self.transaction() as conn:
                won_ids = self._fenced_finish(conn, finishes)
                for finish in finishes:
                    (report.won if finish.run.run_id in won_ids else report.fenced).append(finish)
                if report.won:
                    report.retries = self._apply_task_outcomes(conn, report.won, with_outbox)
        if report.fenced:
            self._recover_committed(report)
        return report

    def _recover_committed(self, report: FinishReport) -> None:
        """Move from ``fenced`` to ``won`` the finishes an earlier attempt of this write had
        committed (its reply lost with the connection): the run already holds this status
        under this lease token, which only this worker knows. Their retries are dispatched
        like any other (the dispatch is idempotent). Fenced runs the store holds as ``queued``
        again go to ``unclaimed``."""
        by_id = {f.run.run_id: f for f in report.fenced}
        with self.connection() as conn:
            rows = conn.execute(
                sa.select(RUNS.c.id, RUNS.c.status, RUNS.c.lease_token).where(
                    RUNS.c.id.in_(list(by_id))
                )
            ).all()
            ours = [
                by_id[row.id]
                for row in rows
                if row.lease_token == by_id[row.id].run.lease_token
                and row.status == by_id[row.id].status
            ]
            retrying = [f for f in ours if f.status == "failed" and f.retry_delay is not None]
            following: dict[tuple[uuid.UUID, int], Any] = {}
            if retrying:
                following = {
                    (row.task_id, row.attempt): row
                    for row in conn.execute(
                        sa.select(
                            RUNS.c.id, RUNS.c.task_id, RUNS.c.attempt, RUNS.c.available_at
                        ).where(RUNS.c.task_id.in_([f.run.task_id for f in retrying]))
                    )
                }
        # queued again: a database crash undid the claim (committed without waiting for the
        # WAL flush) after the handler ran; the caller puts the run back in its queue
        report.unclaimed = [by_id[row.id] for row in rows if row.status == "queued"]
        if not ours:
            return
        recovered = {f.run.run_id for f in ours}
        report.fenced = [f for f in report.fenced if f.run.run_id not in recovered]
        report.won.extend(ours)
        report.recovered.extend(ours)
        for f in retrying:
            # the run that the committed write created (it holds the next attempt number)
            row = following[(f.run.task_id, f.run.attempt + 1)]
            f.next_run_id = row.id
            immediate = (f.retry_delay or 0.0) <= 0
            report.retries.append(dispatch_entry(row.id, f.run.queue, row.available_at, immediate))

    def _finish_runs_pg(self, finishes: Sequence[RunFinish], with_outbox: bool) -> FinishReport:
        """PostgreSQL: the whole batch (runs, tasks, retries, outbox) in one statement."""
        batch = []
        for f in finishes:
            task_status, failure_reason = task_outcome(f)
            if f.status == "failed" and f.retry_delay is not None and f.next_run_id is None:
                f.next_run_id = uuid7()
            batch.append(
                {
                    **_finish_row(f, str(f.run.run_id)),
                    "next_run_id": str(f.next_run_id) if task_status == "retrying" else None,
                    "task_status": task_status,
                    "failure_reason": failure_reason,
                }
            )
        stmt = _FINISH_ALL_PG_OUTBOX if with_outbox else _FINISH_ALL_PG
        with self.raw_statement() as raw:
            rows = raw.execute(stmt, {"batch": dumps(batch)}).fetchall()
        won = {row[0]: (row[1], row[2]) for row in rows}
        report = FinishReport()
        for f in finishes:
            if f.run.run_id not in won:
                report.fenced.append(f)
                continue
            report.won.append(f)
            next_id, available_at = won[f.run.run_id]
            if next_id is not None:
                immediate = (f.retry_delay or 0.0) <= 0
                report.retries.append(dispatch_entry(next_id, f.run.queue, available_at, immediate))
        return report

    def _fenced_finish(self, conn: Connection, finishes: Sequence[RunFinish]) -> set[uuid.UUID]:
        """SQLite: the fenced UPDATE of a batch of runs; returns the ids that won."""
        batch = [_finish_row(f, self.uuid_text(f.run.run_id)) for f in finishes]
        rows = conn.execute(_FINISH_SQLITE, {"batch": dumps(batch)}).all()
        return {row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(row[0]) for row in rows}

    def _apply_task_outcomes(
        self, conn: Connection, won: Sequence[RunFinish], with_outbox: bool
    ) -> list[DispatchEntry]:
        groups: dict[str, list[uuid.UUID]] = {}
        retries = [f for f in won if f.status == "failed" and f.retry_delay is not None]
        for f in won:
            if f.status == "succeeded":
                key = "completed"
            elif f.status == "cancelled":
                key = "cancelled"
            elif f.retry_delay is None:
                key = f"failed:{f.reason or 'retries_exhausted'}"
            else:
                continue
            groups.setdefault(key, []).append(f.run.task_id)
        for key, task_ids in groups.items():
            status, _, reason = key.partition(":")
            conn.execute(
                sa.update(TASKS)
                .where(TASKS.c.id.in_(task_ids))
                .values(
                    status=status,
                    failure_reason=reason or None,
                    finished_at=db_now(),
                    updated_at=db_now(),
                )
            )
        if not retries:
            return []
        conn.execute(
            sa.update(TASKS)
            .where(TASKS.c.id.in_([f.run.task_id for f in retries]))
            .values(status="retrying", retry_count=TASKS.c.retry_count + 1, updated_at=db_now())
        )
        return self._insert_next_runs(
            conn,
            [(f.next_run_id or uuid7(), f.run, float(f.retry_delay or 0.0)) for f in retries],
            with_outbox,
        )

    def _insert_next_runs(
        self,
        conn: Connection,
        next_runs: Sequence[tuple[uuid.UUID, ClaimedRun, float]],
        with_outbox: bool,
        *,
        suspect: bool = False,
    ) -> list[DispatchEntry]:
        rows = conn.execute(
            sa.insert(RUNS)
            .values(
                available_at=db_now_plus(sa.bindparam("delay_s", type_=sa.Float())),
            )
            .returning(RUNS.c.id, RUNS.c.available_at, sort_by_parameter_order=True),
            [
                {
                    "id": run_id,
                    "task_id": run.task_id,
                    "attempt": run.attempt + 1,
                    "status": "queued",
                    "queue_name": run.queue,
                    "delay_s": delay,
                    "suspect": suspect,
                }
                for run_id, run, delay in next_runs
            ],
        ).all()
        entries = [
            dispatch_entry(run_id, run.queue, available_at, delay <= 0)
            for (run_id, run, delay), (_rid, available_at) in zip(next_runs, rows, strict=True)
        ]
        if with_outbox:
            conn.execute(
                sa.insert(OUTBOX),
                [
                    {"run_id": rid, "queue_name": run.queue, "available_at": at}
                    for (rid, run, _d), (_r, at) in zip(next_runs, rows, strict=True)
                ],
            )
        return entries

    # --- hand back ------------------------------------------------------------------------
    def hand_back_runs(
        self, runs: Sequence[ClaimedRun], delay: float | None = None
    ) -> list[ClaimedRun]:
        """Return running runs to ``queued`` without spending an attempt (fenced by token):
        the same run, the same attempt, nothing recorded against it. With ``delay``, each is
        due again that many seconds from now by the database clock.

        Returns the runs actually handed back.
        """
        if not runs:
            return []
        values: dict[str, Any] = {
            "status": "queued",
            "worker_id": None,
            "lease_token": None,
            "lease_expires_at": None,
            "started_at": None,
        }
        if delay is not None:
            values["available_at"] = db_now_plus(sa.literal(float(delay), sa.Float()))
        handed: list[ClaimedRun] = []
        with self.transaction() as conn:
            for run in runs:
                row = conn.execute(
                    sa.update(RUNS)
                    .where(
                        RUNS.c.id == run.run_id,
                        RUNS.c.status == "running",
                        RUNS.c.lease_token == run.lease_token,
                    )
                    .values(**values)
                    .returning(RUNS.c.id)
                ).first()
                if row is not None:
                    handed.append(run)
            if handed:
                conn.execute(
                    sa.update(TASKS)
                    .where(TASKS.c.id.in_([r.task_id for r in handed]), TASKS.c.status == "running")
                    .values(
                        status=sa.case((TASKS.c.retry_count > 0, "retrying"), else_="queued"),
                        updated_at=db_now(),
                    )
                )
        return handed

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

    def mark_lost(
        self, states: Sequence[RunState], *, poison_budget: int, with_outbox: bool
    ) -> list[LostRun]:
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
                    stub = _StubRun(state)
                    (entry,) = self._insert_next_runs(
                        conn,
                        [(uuid7(), stub, 0.0)],  # type: ignore[list-item]
                        with_outbox,
                        suspect=True,
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
                    )
                )
        return results

    def mark_isolated(self, run: ClaimedRun) -> bool:
        """Record that this worker starts suspect ``run`` with no other run beside it (fenced
        by its lease token, and only while its lease holds). False if the run is no longer
        this worker's: it must not start."""
        with self.transaction() as conn:
            row = conn.execute(
                sa.update(RUNS)
                .where(
                    RUNS.c.id == run.run_id,
                    RUNS.c.status == "running",
                    RUNS.c.lease_token == run.lease_token,
                    RUNS.c.lease_expires_at > db_now(),
                )
                .values(isolated_at=db_now())
                .returning(RUNS.c.id)
            ).first()
        return row is not None

    def queued_runs(
        self,
        queue: str,
        *,
        enqueued_before: datetime,
        limit: int = 10_000,
        after: uuid.UUID | None = None,
    ) -> list[tuple[uuid.UUID, datetime]]:
        """Queued runs of ``queue`` older than ``enqueued_before``: (id, available_at), by id."""
        stmt = (
            sa.select(RUNS.c.id, RUNS.c.available_at)
            .where(
                RUNS.c.queue_name == queue,
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
        """Queued and failed counts of ``queue``, in total and older than ``settled_before``."""
        before = sa.bindparam("before", settled_before, type_=UTCDateTime())
        with self.connection() as conn:
            queued, queued_settled = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(RUNS.c.enqueued_at < before),
                ).where(RUNS.c.queue_name == queue, RUNS.c.status == "queued")
            ).one()
            failed, failed_settled = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(TASKS.c.finished_at < before),
                ).where(TASKS.c.queue_name == queue, TASKS.c.status == "failed")
            ).one()
        return ReconcileCounts(int(queued), int(queued_settled), int(failed), int(failed_settled))

    def queued_queue_names(self) -> list[str]:
        """Queues that have queued or running runs in the store."""
        with self.connection() as conn:
            return [
                row[0]
                for row in conn.execute(
                    sa.select(RUNS.c.queue_name)
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
