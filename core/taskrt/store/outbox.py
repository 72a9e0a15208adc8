"""The outbox: runs committed to the store that the queue backend may not have yet."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from taskrt.db.types import db_now_plus
from taskrt.records import DispatchEntry
from taskrt.store.base import OUTBOX, RUNS, StoreBase
from taskrt.store.mappers import dispatch_entry


class OutboxStore(StoreBase):
    """Statements about the outbox."""

    def delete_outbox(self, run_ids: Sequence[uuid.UUID]) -> None:
        """Forget outbox rows whose runs were dispatched by their producer.

        Losing this delete only costs a harmless second dispatch by the relay, so on
        PostgreSQL it commits without waiting for the WAL flush.
        """
        if not run_ids:
            return
        with self.transaction() as conn:
            self.sql.relax_commit(conn)
            conn.execute(sa.delete(OUTBOX).where(OUTBOX.c.run_id.in_(list(run_ids))))

    def relay_outbox(
        self, dispatch: Callable[[Sequence[DispatchEntry]], None], *, grace: float, limit: int = 500
    ) -> int:
        """Dispatch outbox rows older than ``grace`` seconds whose runs are still queued, then
        delete them. Rows are locked (SKIP LOCKED) while dispatching, so concurrent relays in
        other workers take different rows. Returns the number of runs dispatched."""
        stmt = (
            sa.select(
                OUTBOX.c.run_id,
                OUTBOX.c.tenant,
                OUTBOX.c.queue_name,
                RUNS.c.status,
                RUNS.c.available_at,
            )
            .join(RUNS, RUNS.c.id == OUTBOX.c.run_id)
            .where(OUTBOX.c.created_at < db_now_plus(sa.literal(-grace, sa.Float())))
            .order_by(OUTBOX.c.run_id)
            .limit(limit)
        )
        stmt = self.sql.skip_locked(stmt, of=OUTBOX)
        with self.transaction() as conn:
            rows = conn.execute(stmt).all()
            if not rows:
                return 0
            entries = [
                dispatch_entry(
                    row.run_id, row.queue_name, row.available_at, False, tenant=row.tenant
                )
                for row in rows
                if row.status == "queued"
            ]
            if entries:
                dispatch(entries)
            conn.execute(sa.delete(OUTBOX).where(OUTBOX.c.run_id.in_([row.run_id for row in rows])))
        return len(entries)
