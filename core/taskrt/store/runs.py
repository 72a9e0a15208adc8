"""The hot path: claiming runs, renewing leases and writing outcomes, each in batches and each
fenced by the run's lease token (docs/design/decisions.md, decision 25)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from taskrt.db.types import db_now, db_now_plus
from taskrt.records import ClaimedRun, FinishReport, RunFinish
from taskrt.store.base import RUNS, TASKS, StoreBase
from taskrt.store.mappers import dispatch_entry
from taskrt.store.rules import is_retry


class RunStore(StoreBase):
    """Statements about running runs."""

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
        with self.sql.claimer(
            worker_id=worker_id, lease_token=lease_token, lease_ttl=lease_ttl
        ) as claimer:
            claimed = claimer.by_ids(run_ids)
        order = {run_id: i for i, run_id in enumerate(run_ids)}
        return sorted(claimed, key=lambda run: order[run.run_id])  # the fetch (priority) order

    # --- renew ----------------------------------------------------------------------------
    def renew_leases(
        self, run_ids: Sequence[uuid.UUID], *, worker_id: uuid.UUID, lease_ttl: float
    ) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        """Extend this worker's leases; return (runs still ours, runs asked to cancel)."""
        if not run_ids:
            return set(), set()
        return self.sql.renew_leases(run_ids, worker_id=worker_id, lease_ttl=lease_ttl)

    # --- finish ---------------------------------------------------------------------------
    def finish_runs(self, finishes: Sequence[RunFinish]) -> FinishReport:
        """Write a batch of outcomes in one transaction.

        Each run's UPDATE is fenced by (id, status 'running', lease token); a fenced run is
        reported in ``fenced`` and changes nothing, and never blocks the others of the batch.
        Winners update their tasks: completed, cancelled, failed (dead-lettered) or retrying
        with a new queued run.
        """
        if not finishes:
            return FinishReport()
        report = self.sql.finish_runs(finishes, outbox=self.outbox)
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
            retrying = [f for f in ours if is_retry(f)]
            following: dict[tuple[uuid.UUID, int], Any] = {}
            if retrying:
                following = {
                    (row.task_id, row.attempt): row
                    for row in conn.execute(
                        sa.select(
                            RUNS.c.id,
                            RUNS.c.task_id,
                            RUNS.c.attempt,
                            RUNS.c.available_at,
                            RUNS.c.tenant,
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
            report.retries.append(
                dispatch_entry(row.id, f.run.queue, row.available_at, immediate, tenant=row.tenant)
            )

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
