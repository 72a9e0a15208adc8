"""Per-queue state kept in the store (paused or not)."""

from __future__ import annotations

import sqlalchemy as sa

from taskrt.db.types import db_now
from taskrt.records import Actor
from taskrt.store.audit import write_audit
from taskrt.store.base import QUEUES, StoreBase


class QueueStateStore(StoreBase):
    """Statements about queue state."""

    def set_paused(self, queue: str, paused: bool, *, actor: Actor | None = None) -> None:
        """Record that ``queue`` is paused (or not), with an audit row."""
        stmt = self.sql.upsert(QUEUES).values(name=queue, paused=paused)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant", "name"], set_={"paused": paused, "updated_at": db_now()}
        )
        with self.transaction() as conn:
            conn.execute(stmt)
            write_audit(conn, actor, "queue.pause" if paused else "queue.resume", "queue", [queue])

    def paused_queues(self) -> set[str]:
        """Names of paused queues."""
        with self.connection() as conn:
            return {row[0] for row in conn.execute(sa.select(QUEUES.c.name).where(QUEUES.c.paused))}

    def known_queues(self) -> set[str]:
        """Every queue the store has seen a task in or holds state for."""
        from taskrt.store.base import TASKS

        with self.connection() as conn:
            names = {row[0] for row in conn.execute(sa.select(QUEUES.c.name))}
            names |= {
                row[0]
                for row in conn.execute(
                    sa.select(TASKS.c.queue_name).where(TASKS.c.type == "immediate").distinct()
                )
            }
        return names
