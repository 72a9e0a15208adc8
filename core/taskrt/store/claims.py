"""The claim step both queue backends share: mark queued runs ``running`` under a lease token,
mark their tasks ``running`` and load what executing them needs.

On PostgreSQL this is one statement (two data-modifying CTEs), so a claim costs one round trip
however many runs it takes; SQLite runs the two updates one after the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from taskrt.db.types import db_now, db_now_plus
from taskrt.queue.base import ClaimedRun
from taskrt.store.base import RUNS, TASKS

CLAIMED_RUN_COLUMNS = (
    RUNS.c.id,
    RUNS.c.task_id,
    RUNS.c.attempt,
    RUNS.c.queue_name,
    RUNS.c.enqueued_at,
    RUNS.c.available_at,
    RUNS.c.started_at,
)

TASK_COLUMNS = (
    TASKS.c.name,
    TASKS.c.payload,
    TASKS.c.max_retries,
    TASKS.c.retry_strategy,
    TASKS.c.retry_params,
    TASKS.c.timeout_seconds,
    TASKS.c.trace_id,
    TASKS.c.retry_count,
    TASKS.c.lost_runs,
    TASKS.c.cancel_requested_at,
)


def claim_values(worker_id: uuid.UUID, lease_token: str, lease_ttl: float) -> dict[str, Any]:
    """The SET clause of a claim: running, this worker, this token, a lease from the db clock."""
    return {
        "status": "running",
        "worker_id": worker_id,
        "lease_token": lease_token,
        "started_at": db_now(),
        "lease_expires_at": db_now_plus(sa.literal(lease_ttl, sa.Float())),
    }


def claim(
    conn: Connection,
    where: Sequence[sa.ColumnElement[bool]],
    *,
    is_postgresql: bool,
    worker_id: uuid.UUID,
    lease_token: str,
    lease_ttl: float,
) -> list[ClaimedRun]:
    """Claim the queued runs matching ``where`` (fenced on status ``queued``) in ``conn``'s
    transaction; returns them in no particular order."""
    update_runs = (
        sa.update(RUNS)
        .where(*where, RUNS.c.status == "queued")
        .values(**claim_values(worker_id, lease_token, lease_ttl))
        .returning(*CLAIMED_RUN_COLUMNS)
    )
    if not is_postgresql:
        return _load_tasks(conn, conn.execute(update_runs).all(), lease_token)
    claimed = update_runs.cte("claimed")
    task_rows = (
        sa.update(TASKS)
        .where(TASKS.c.id == claimed.c.task_id)
        .values(status="running", updated_at=db_now())
        .returning(TASKS.c.id.label("t_id"), *TASK_COLUMNS)
        .cte("task_rows")
    )
    rows = conn.execute(
        sa.select(claimed, task_rows).join_from(
            claimed, task_rows, task_rows.c.t_id == claimed.c.task_id
        )
    ).mappings()
    return [_claimed_run(row, row, lease_token) for row in rows]


def _load_tasks(
    conn: Connection, claimed: Sequence[sa.Row[Any]], lease_token: str
) -> list[ClaimedRun]:
    if not claimed:
        return []
    tasks = {
        row["id"]: row
        for row in conn.execute(
            sa.update(TASKS)
            .where(TASKS.c.id.in_([c.task_id for c in claimed]))
            .values(status="running", updated_at=db_now())
            .returning(TASKS.c.id, *TASK_COLUMNS)
        ).mappings()
    }
    return [_claimed_run(c._mapping, tasks[c.task_id], lease_token) for c in claimed]


def _claimed_run(run: RowMapping, task: RowMapping, lease_token: str) -> ClaimedRun:
    return ClaimedRun(
        run_id=run["id"],
        task_id=run["task_id"],
        attempt=run["attempt"],
        queue=run["queue_name"],
        lease_token=lease_token,
        name=task["name"],
        payload=task["payload"],
        max_retries=task["max_retries"],
        retry=task["retry_strategy"],
        retry_params=task["retry_params"] or {},
        timeout=task["timeout_seconds"],
        trace_id=task["trace_id"],
        retry_count=task["retry_count"],
        lost_runs=task["lost_runs"],
        enqueued_at=run["enqueued_at"],
        available_at=run["available_at"],
        started_at=run["started_at"],
        cancel_requested=task["cancel_requested_at"] is not None,
    )
