"""Per-queue state kept in the store (paused or not), per tenant."""

from __future__ import annotations

import sqlalchemy as sa

from taskrt.db.types import db_now
from taskrt.records import DEFAULT_TENANT, Actor, address
from taskrt.store.audit import write_audit
from taskrt.store.base import QUEUES, TASKS, StoreBase


class QueueStateStore(StoreBase):
    """Statements about queue state."""

    def set_paused(
        self,
        queue: str,
        paused: bool,
        *,
        actor: Actor | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """Record that ``tenant``'s ``queue`` is paused (or not), with an audit row."""
        stmt = self.sql.upsert(QUEUES).values(tenant=tenant, name=queue, paused=paused)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant", "name"], set_={"paused": paused, "updated_at": db_now()}
        )
        with self.transaction() as conn:
            conn.execute(stmt)
            action = "queue.pause" if paused else "queue.resume"
            write_audit(conn, actor, action, "queue", [queue], tenant=tenant)

    def paused_queues(self) -> set[str]:
        """Addresses (:func:`taskrt.records.address`) of paused queues, every tenant's."""
        stmt = sa.select(QUEUES.c.tenant, QUEUES.c.name).where(QUEUES.c.paused)
        with self.connection() as conn:
            return {address(tenant, name) for tenant, name in conn.execute(stmt)}

    def known_queues(self) -> set[str]:
        """Addresses of every queue the store has seen a task in or holds state for, every
        tenant's."""
        with self.connection() as conn:
            stored = conn.execute(sa.select(QUEUES.c.tenant, QUEUES.c.name))
            pairs = {(tenant, name) for tenant, name in stored}
            used = conn.execute(
                sa.select(TASKS.c.tenant, TASKS.c.queue_name)
                .where(TASKS.c.type == "immediate")
                .distinct()
            )
            pairs |= {(tenant, name) for tenant, name in used}
        return {address(tenant, name) for tenant, name in pairs}

    def tenant_queues(self, tenant: str = DEFAULT_TENANT) -> set[str]:
        """Names of ``tenant``'s queues: those it has tasks in or holds state for."""
        with self.connection() as conn:
            names = set(
                conn.execute(sa.select(QUEUES.c.name).where(QUEUES.c.tenant == tenant)).scalars()
            )
            names |= set(
                conn.execute(
                    sa.select(TASKS.c.queue_name)
                    .where(TASKS.c.tenant == tenant, TASKS.c.type == "immediate")
                    .distinct()
                ).scalars()
            )
        return names
