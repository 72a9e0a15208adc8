"""What a queue backend asks the store around claims: the database clock, the runs a claim
refused because they are not due yet, and the leases running runs hold. (The claims
themselves are :meth:`taskrt.store.runs.RunStore.claim_runs` and
:meth:`taskrt.store.sqlqueue.SqlQueueStore.claim_next`.)"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from taskrt.db.types import UTCDateTime, db_now
from taskrt.records import split_address
from taskrt.store.base import RUNS, StoreBase


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
        """The leases of every running run of the address ``queue``, with the time they have
        left."""
        tenant, name = split_address(queue)
        stmt = sa.select(
            RUNS.c.id,
            RUNS.c.worker_id,
            RUNS.c.lease_token,
            sa.type_coerce(RUNS.c.lease_expires_at, UTCDateTime()).label("expires"),
            _database_now(),
        ).where(RUNS.c.tenant == tenant, RUNS.c.queue_name == name, RUNS.c.status == "running")
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


__all__: Sequence[str] = ["ClaimStore", "HeldLease", "remaining_ms"]
