"""Statements of the SQL queue backend: the ``task_runs`` table itself is the queue.

The queue layer names a tenant's queue by its address (:func:`taskrt.records.address`: the
bare name for the default tenant, ``tenant/queue`` otherwise); these statements split it into
the ``(tenant, queue_name)`` columns. A queued run is ready when its ``available_at`` has passed
by the database clock. Fetching takes the oldest ready runs of a queue with ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so concurrent workers never wait for each other or take the same run;
SQLite serializes writers instead (every transaction starts with ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from taskrt.db.types import db_now
from taskrt.records import ClaimedRun, QueueCounts, RunState, split_address
from taskrt.store.base import QUEUES, RUNS, TASKS, StoreBase
from taskrt.store.mappers import run_state
from taskrt.store.reaping import RUN_STATE_COLUMNS


class SqlQueueStore(StoreBase):
    """Fetching, counting and reaping when the queues live in the database."""

    def claim_next(
        self,
        plan: Sequence[tuple[str, int] | str],
        limit: int,
        *,
        worker_id: uuid.UUID,
        lease_token: str,
        lease_ttl: float,
    ) -> list[ClaimedRun]:
        """Claim up to ``limit`` ready runs, taking from the plan's queues in the order given,
        in one transaction. Each step of ``plan`` is ``(address, cap)``: at most ``cap`` runs
        of that tenant's queue; a bare address (the form before tenants) has no cap but
        ``limit``. An address that gave fewer runs than asked is not asked again in this
        call (a fairness plan's second pass names the same addresses again)."""
        claimed: list[ClaimedRun] = []
        # one queue at a time, in priority order: on PostgreSQL one atomic statement per queue
        # (each claimed run is fenced on its own, so they need no common transaction); SQLite
        # does them in one transaction
        with self.sql.claimer(
            worker_id=worker_id, lease_token=lease_token, lease_ttl=lease_ttl
        ) as claimer:
            drained: set[str] = set()
            for step in plan:
                addr, cap = (step, limit) if isinstance(step, str) else step
                if limit - len(claimed) <= 0:
                    break
                want = min(limit - len(claimed), cap)
                if want <= 0 or addr in drained:
                    continue
                tenant, queue = split_address(addr)
                runs = claimer.next(tenant, queue, want)
                if len(runs) < want:  # nothing more is due there: a later step skips it
                    drained.add(addr)
                claimed.extend(sorted(runs, key=lambda r: (r.available_at, r.run_id)))
        return claimed

    def seconds_until_due(self, queues: Sequence[str]) -> float | None:
        """Seconds until the earliest queued run of the addresses ``queues`` is due (0 if one
        is due now), or None if none is queued (or none is given)."""
        if not queues:
            return None
        with self.connection() as conn:
            row = conn.execute(
                sa.select(sa.func.min(RUNS.c.available_at), db_now()).where(
                    at_addresses(RUNS.c.tenant, RUNS.c.queue_name, queues),
                    RUNS.c.status == "queued",
                    ~sa.exists().where(
                        QUEUES.c.tenant == RUNS.c.tenant,
                        QUEUES.c.name == RUNS.c.queue_name,
                        QUEUES.c.paused,
                    ),
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

    def queue_counts(
        self, queues: Sequence[str] | None = None, *, tenant: str | None = None
    ) -> list[QueueCounts]:
        """Ready, delayed, running and dead-lettered counts and the paused flag per queue:
        of the addresses ``queues`` in that order, else of every queue of ``tenant`` (None:
        of every tenant), by tenant then name."""
        now = db_now()

        def scope_of(t: sa.ColumnElement[Any], q: sa.ColumnElement[Any]) -> Any:
            if queues is not None:
                return at_addresses(t, q, queues)
            return sa.true() if tenant is None else t == tenant

        run_counts = (
            sa.select(
                RUNS.c.tenant,
                RUNS.c.queue_name,
                sa.func.count().filter(RUNS.c.status == "queued", RUNS.c.available_at <= now),
                sa.func.count().filter(RUNS.c.status == "queued", RUNS.c.available_at > now),
                sa.func.count().filter(RUNS.c.status == "running"),
            )
            .where(RUNS.c.status.in_(("queued", "running")))
            .group_by(RUNS.c.tenant, RUNS.c.queue_name)
        )
        dead = (
            sa.select(TASKS.c.tenant, TASKS.c.queue_name, sa.func.count())
            .where(TASKS.c.status == "failed")
            .group_by(TASKS.c.tenant, TASKS.c.queue_name)
        )
        state = sa.select(QUEUES.c.tenant, QUEUES.c.name, QUEUES.c.paused)
        if queues is not None or tenant is not None:
            run_counts = run_counts.where(scope_of(RUNS.c.tenant, RUNS.c.queue_name))
            dead = dead.where(scope_of(TASKS.c.tenant, TASKS.c.queue_name))
            state = state.where(scope_of(QUEUES.c.tenant, QUEUES.c.name))
        with self.connection() as conn:
            runs = {(row[0], row[1]): row[2:] for row in conn.execute(run_counts)}
            dlq: dict[tuple[str, str], int] = {
                (row[0], row[1]): int(row[2]) for row in conn.execute(dead)
            }
            states = {(row[0], row[1]): bool(row[2]) for row in conn.execute(state)}
        pairs = (
            [split_address(addr) for addr in queues]
            if queues is not None
            else sorted(set(runs) | set(dlq) | set(states))
        )
        return [
            QueueCounts(
                name=name,
                ready=int(runs.get((t, name), (0, 0, 0))[0]),
                delayed=int(runs.get((t, name), (0, 0, 0))[1]),
                inflight=int(runs.get((t, name), (0, 0, 0))[2]),
                dlq=int(dlq.get((t, name), 0)),
                paused=states.get((t, name), False),
                tenant=t,
            )
            for t, name in pairs
        ]


def at_addresses(
    tenant: sa.ColumnElement[Any], queue: sa.ColumnElement[Any], addresses: Sequence[str]
) -> sa.ColumnElement[bool]:
    """``(tenant, queue)`` is one of ``addresses``: one ``tenant = t AND queue IN (...)`` per
    tenant (so each reads its tenant's range of a tenant-led index), joined by OR."""
    by_tenant: dict[str, list[str]] = {}
    for addr in addresses:
        t, q = split_address(addr)
        by_tenant.setdefault(t, []).append(q)
    if not by_tenant:
        return sa.false()
    return sa.or_(*(sa.and_(tenant == t, queue.in_(qs)) for t, qs in by_tenant.items()))


__all__ = ["SqlQueueStore", "at_addresses"]
