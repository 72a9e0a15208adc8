"""Statements of the SQL queue backend: the ``task_runs`` table itself is the queue.

A queued run is ready when its ``available_at`` has passed by the database clock. Fetching takes
the oldest ready runs of a queue with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent
workers never wait for each other or take the same run; SQLite serializes writers instead (every
transaction starts with ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from taskrt.db.types import db_now
from taskrt.records import ClaimedRun, QueueCounts, RunState
from taskrt.store.base import QUEUES, RUNS, TASKS, StoreBase
from taskrt.store.mappers import run_state
from taskrt.store.reaping import RUN_STATE_COLUMNS


class SqlQueueStore(StoreBase):
    """Fetching, counting and reaping when the queues live in the database."""

    def claim_next(
        self,
        queues: Sequence[str],
        limit: int,
        *,
        worker_id: uuid.UUID,
        lease_token: str,
        lease_ttl: float,
    ) -> list[ClaimedRun]:
        """Claim up to ``limit`` ready runs, taking from ``queues`` in the order given, in one
        transaction."""
        claimed: list[ClaimedRun] = []
        # one queue at a time, in priority order: on PostgreSQL one atomic statement per queue
        # (each claimed run is fenced on its own, so they need no common transaction); SQLite
        # does them in one transaction
        with self.sql.claimer(
            worker_id=worker_id, lease_token=lease_token, lease_ttl=lease_ttl
        ) as claimer:
            for queue in queues:
                want = limit - len(claimed)
                if want <= 0:
                    break
                runs = claimer.next(queue, want)
                claimed.extend(sorted(runs, key=lambda r: (r.available_at, r.run_id)))
        return claimed

    def seconds_until_due(self, queues: Sequence[str]) -> float | None:
        """Seconds until the earliest queued run of ``queues`` is due (0 if one is due now),
        or None if none is queued."""
        with self.connection() as conn:
            row = conn.execute(
                sa.select(sa.func.min(RUNS.c.available_at), db_now()).where(
                    RUNS.c.queue_name.in_(list(queues)),
                    RUNS.c.status == "queued",
                    ~sa.exists().where(QUEUES.c.name == RUNS.c.queue_name, QUEUES.c.paused),
                )
            ).one()
        earliest, now = row
        if earliest is None:
            return None
        return max(float((earliest - now).total_seconds()), 0.0)

    def expired_running(self, limit: int = 500) -> list[RunState]:
        """Running runs whose lease deadline has passed by the database clock."""
        stmt = (
            sa.select(*RUN_STATE_COLUMNS)
            .where(RUNS.c.status == "running", RUNS.c.lease_expires_at < db_now())
            .order_by(RUNS.c.lease_expires_at)
            .limit(limit)
        )
        with self.connection() as conn:
            return [run_state(row, lease_expired=True) for row in conn.execute(stmt)]

    def queue_counts(self, queues: Sequence[str] | None = None) -> list[QueueCounts]:
        """Ready, delayed, running and dead-lettered counts and the paused flag per queue."""
        now = db_now()
        run_counts = (
            sa.select(
                RUNS.c.queue_name,
                sa.func.count().filter(RUNS.c.status == "queued", RUNS.c.available_at <= now),
                sa.func.count().filter(RUNS.c.status == "queued", RUNS.c.available_at > now),
                sa.func.count().filter(RUNS.c.status == "running"),
            )
            .where(RUNS.c.status.in_(("queued", "running")))
            .group_by(RUNS.c.queue_name)
        )
        dead = (
            sa.select(TASKS.c.queue_name, sa.func.count())
            .where(TASKS.c.status == "failed")
            .group_by(TASKS.c.queue_name)
        )
        with self.connection() as conn:
            runs = {row[0]: row[1:] for row in conn.execute(run_counts)}
            dlq: dict[str, int] = {row[0]: int(row[1]) for row in conn.execute(dead)}
            paused = {
                row[0] for row in conn.execute(sa.select(QUEUES.c.name).where(QUEUES.c.paused))
            }
            known = {row[0] for row in conn.execute(sa.select(QUEUES.c.name))}
        names = list(queues) if queues is not None else sorted(set(runs) | set(dlq) | known)
        return [
            QueueCounts(
                name=name,
                ready=int(runs.get(name, (0, 0, 0))[0]),
                delayed=int(runs.get(name, (0, 0, 0))[1]),
                inflight=int(runs.get(name, (0, 0, 0))[2]),
                dlq=int(dlq.get(name, 0)),
                paused=name in paused,
            )
            for name in names
        ]
