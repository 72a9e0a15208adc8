"""The claim step both queue backends share: mark queued runs ``running`` under a lease token,
mark their tasks ``running`` and load what executing them needs.

On PostgreSQL this is one statement (two data-modifying CTEs) run outside an explicit
transaction, so a claim costs one round trip however many runs it takes; SQLite runs the two
updates in one transaction. The statements are built once, with bound parameters, so their SQL
text is stable and psycopg prepares them on the server.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, RowMapping

from taskrt.db.types import UTCDateTime, db_now, db_now_plus
from taskrt.records import ClaimedRun
from taskrt.store.base import QUEUES, RUNS, TASKS, StoreBase

CLAIMED_RUN_COLUMNS = (
    RUNS.c.id,
    RUNS.c.task_id,
    RUNS.c.attempt,
    RUNS.c.queue_name,
    RUNS.c.enqueued_at,
    RUNS.c.available_at,
    RUNS.c.started_at,
    RUNS.c.suspect,
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


def _run_filter(source: str, is_postgresql: bool) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses choosing the runs to claim: by ``ids``, or the oldest due of ``queue``."""
    if source == "ids":
        if is_postgresql:
            # join an unnested array rather than `id = ANY(...)`: with stale statistics the
            # planner may otherwise scan the partial index of queued runs instead of probing
            # the primary key once per id
            ids = sa.bindparam("ids", type_=postgresql.ARRAY(sa.Uuid()))
            unnested = sa.func.unnest(ids).table_valued("id").render_derived(name="picked")
            return [RUNS.c.id == unnested.c.id]
        return [RUNS.c.id.in_(sa.bindparam("ids", expanding=True))]
    queue = sa.bindparam("queue", type_=sa.String())
    # a materialized CTE: PostgreSQL runs the locking SELECT exactly once, so the LIMIT holds
    # (an IN (subquery) may be re-evaluated and over-claim)
    picked = (
        sa.select(RUNS.c.id)
        .where(
            RUNS.c.queue_name == queue,
            RUNS.c.status == "queued",
            RUNS.c.available_at <= db_now(),
            ~sa.exists().where(QUEUES.c.name == queue, QUEUES.c.paused),
        )
        .order_by(RUNS.c.available_at, RUNS.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return [RUNS.c.id == picked.c.id]


@cache
def claim_statements(source: str, is_postgresql: bool) -> tuple[Any, Any]:
    """(claim statement, SQLite's follow-up task update or None), built once per kind."""
    update_runs = (
        sa.update(RUNS)
        .where(
            *_run_filter(source, is_postgresql),
            RUNS.c.status == "queued",
            # the database clock decides when a run may start, whatever queue fetched it
            RUNS.c.available_at <= db_now(),
        )
        .values(
            status="running",
            worker_id=sa.bindparam("worker_id", type_=sa.Uuid()),
            lease_token=sa.bindparam("lease_token", type_=sa.String()),
            started_at=db_now(),
            lease_expires_at=db_now_plus(sa.bindparam("lease_ttl", type_=sa.Float())),
            isolated_at=None,  # set again only when this worker starts it alone
        )
        .returning(*CLAIMED_RUN_COLUMNS)
    )
    mark_tasks = sa.update(TASKS).values(status="running", updated_at=db_now())
    if not is_postgresql:
        follow_up = mark_tasks.where(
            TASKS.c.id.in_(sa.bindparam("task_ids", expanding=True))
        ).returning(TASKS.c.id, *TASK_COLUMNS)
        return update_runs, follow_up
    claimed = update_runs.cte("claimed")
    task_rows = (
        mark_tasks.where(TASKS.c.id == claimed.c.task_id)
        .returning(TASKS.c.id.label("t_id"), *TASK_COLUMNS)
        .cte("task_rows")
    )
    joined = sa.select(claimed, task_rows).join_from(
        claimed, task_rows, task_rows.c.t_id == claimed.c.task_id
    )
    return joined, None


def claim(
    conn: Connection,
    source: str,
    params: dict[str, Any],
    *,
    is_postgresql: bool,
    worker_id: uuid.UUID,
    lease_token: str,
    lease_ttl: float,
) -> list[ClaimedRun]:
    """Claim queued runs chosen by ``source`` (``ids`` with param ``ids``, or ``queue`` with
    params ``queue`` and ``limit``), fenced on status ``queued`` and on ``available_at`` having
    passed by the database clock; in no particular order."""
    statement, follow_up = claim_statements(source, is_postgresql)
    values = {**params, "worker_id": worker_id, "lease_token": lease_token, "lease_ttl": lease_ttl}
    if follow_up is None:
        rows = conn.execute(statement, values).mappings()
        return [_claimed_run(row, row, lease_token) for row in rows]
    claimed = conn.execute(statement, values).all()
    if not claimed:
        return []
    tasks = {
        row["id"]: row
        for row in conn.execute(follow_up, {"task_ids": [c.task_id for c in claimed]}).mappings()
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
        suspect=bool(run["suspect"]),
    )


def remaining_ms(until: datetime, now: datetime) -> int:
    """Milliseconds from ``now`` to ``until``, rounded up (a due time is never brought
    forward), at least 0."""
    return max(math.ceil((until - now).total_seconds() * 1000), 0)


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A running run's lease as the store records it, for rebuilding a lost Redis index."""

    run_id: uuid.UUID
    worker_id: uuid.UUID
    lease_token: str
    remaining_ms: int
    """Milliseconds until the lease expires by the database clock (0: expired already)."""


def _database_now() -> sa.ColumnElement[datetime]:
    return sa.type_coerce(db_now(), UTCDateTime()).label("db_now")


class ClaimStore(StoreBase):
    """What a queue backend asks the store around claims: the database clock, the runs a
    claim refused because they are not due yet, and the leases running runs hold.

    Every due-time decision is the database's: a queue that holds its own clock (Redis)
    asks for the time left rather than comparing its clock with the database's.
    """

    def clock(self) -> datetime:
        """The database clock, read once (an aware UTC datetime)."""
        with self.connection() as conn:
            value: datetime = conn.execute(sa.select(_database_now())).scalar_one()
        return value

    def not_due(self, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Of ``run_ids``, the queued runs whose ``available_at`` is still ahead by the
        database clock: run id -> milliseconds left (rounded up, at least 1)."""
        if not run_ids:
            return {}
        stmt = sa.select(RUNS.c.id, RUNS.c.available_at, _database_now()).where(
            RUNS.c.id.in_(list(run_ids)), RUNS.c.status == "queued"
        )
        with self.connection() as conn:
            rows = conn.execute(stmt).all()
        return {
            row.id: max(remaining_ms(row.available_at, row.db_now), 1)
            for row in rows
            if row.available_at > row.db_now
        }

    def held_leases(self, queue: str) -> list[HeldLease]:
        """The leases of every running run of ``queue``, with the time they have left."""
        stmt = sa.select(
            RUNS.c.id,
            RUNS.c.worker_id,
            RUNS.c.lease_token,
            sa.type_coerce(RUNS.c.lease_expires_at, UTCDateTime()).label("expires"),
            _database_now(),
        ).where(RUNS.c.queue_name == queue, RUNS.c.status == "running")
        with self.connection() as conn:
            rows = conn.execute(stmt).all()
        return [
            HeldLease(
                run_id=row.id,
                worker_id=row.worker_id,
                lease_token=row.lease_token,
                remaining_ms=remaining_ms(row.expires or row.db_now, row.db_now),
            )
            for row in rows
            if row.worker_id is not None and row.lease_token is not None
        ]


__all__: Sequence[str] = [
    "ClaimStore",
    "HeldLease",
    "claim",
    "claim_statements",
    "remaining_ms",
]


# --- PostgreSQL, through psycopg directly (see StoreBase.raw_statement) ------------------------

_CLAIM_PG_TEMPLATE = """
WITH {picked}
claimed AS (
    UPDATE task_runs SET
        status = 'running',
        worker_id = %(worker_id)s,
        lease_token = %(lease_token)s,
        started_at = statement_timestamp(),
        lease_expires_at = statement_timestamp() + make_interval(secs => %(lease_ttl)s),
        isolated_at = NULL
    FROM {source}
    WHERE task_runs.id = picked.id AND task_runs.status = 'queued'
        AND task_runs.available_at <= statement_timestamp()
    RETURNING task_runs.id, task_runs.task_id, task_runs.attempt, task_runs.queue_name,
        task_runs.enqueued_at, task_runs.available_at, task_runs.started_at, task_runs.suspect
),
task_rows AS (
    UPDATE tasks SET status = 'running', updated_at = statement_timestamp()
    FROM claimed WHERE tasks.id = claimed.task_id
    RETURNING tasks.id, tasks.name, tasks.payload, tasks.max_retries, tasks.retry_strategy,
        tasks.retry_params, tasks.timeout_seconds, tasks.trace_id, tasks.retry_count,
        tasks.lost_runs, tasks.cancel_requested_at
)
SELECT c.id, c.task_id, c.attempt, c.queue_name, c.enqueued_at, c.available_at, c.started_at,
    t.name, t.payload, t.max_retries, t.retry_strategy, t.retry_params, t.timeout_seconds,
    t.trace_id, t.retry_count, t.lost_runs, t.cancel_requested_at, c.suspect
FROM claimed c JOIN task_rows t ON t.id = c.task_id
"""

# by ids: an unnested array joined on the primary key (with stale statistics `id = ANY(...)`
# may scan the partial index of queued runs instead)
CLAIM_BY_IDS_PG = _CLAIM_PG_TEMPLATE.format(
    picked="", source="unnest(%(ids)s::uuid[]) AS picked(id)"
)

# the oldest due runs of a queue: a materialized CTE, so the locking SELECT runs exactly once
# and its LIMIT holds (an IN (subquery) may be re-evaluated and over-claim)
CLAIM_NEXT_PG = _CLAIM_PG_TEMPLATE.format(
    picked="""picked AS MATERIALIZED (
    SELECT id FROM task_runs
    WHERE queue_name = %(queue)s AND status = 'queued' AND available_at <= statement_timestamp()
        AND NOT EXISTS (SELECT 1 FROM queues WHERE name = %(queue)s AND paused)
    ORDER BY available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),""",
    source="picked",
)


def claimed_from_tuple(row: tuple[Any, ...], lease_token: str) -> ClaimedRun:
    """A ClaimedRun from a row of CLAIM_BY_IDS_PG or CLAIM_NEXT_PG."""
    (
        run_id,
        task_id,
        attempt,
        queue,
        enqueued_at,
        available_at,
        started_at,
        name,
        payload,
        max_retries,
        retry,
        retry_params,
        timeout,
        trace_id,
        retry_count,
        lost_runs,
        cancel_requested_at,
        suspect,
    ) = row
    return ClaimedRun(
        run_id=run_id,
        task_id=task_id,
        attempt=attempt,
        queue=queue,
        lease_token=lease_token,
        name=name,
        payload=payload,
        max_retries=max_retries,
        retry=retry,
        retry_params=retry_params or {},
        timeout=timeout,
        trace_id=trace_id,
        retry_count=retry_count,
        lost_runs=lost_runs,
        enqueued_at=enqueued_at,
        available_at=available_at,
        started_at=started_at,
        cancel_requested=cancel_requested_at is not None,
        suspect=bool(suspect),
    )
