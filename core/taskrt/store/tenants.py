"""Tenants: the rows of the ``tenants`` table (weights and quotas), and deleting one safely.

Checking names, weights and quotas is the tenants service's job (:mod:`taskrt.tenants`); the
database's CHECK constraints are the last line. Every change writes an audit row in the managed
tenant (``tenant.create``, ``tenant.update``, ``tenant.delete``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from taskrt.db import models
from taskrt.db.types import db_now
from taskrt.exceptions import InvalidStateError, UnknownTenantError
from taskrt.records import DEFAULT_TENANT, Actor, TenantRecord
from taskrt.store.audit import write_audit
from taskrt.store.base import API_KEYS, QUEUES, SCHEDULES, TASKS, StoreBase

TENANTS = models.tenants
QUOTA_STATE = models.tenant_quota_state

WAITING_STATUSES = ("queued", "retrying")
"""Task statuses a ``max-queued`` quota counts: waiting to run (delayed included), not running."""

_COLUMNS = ("weight", "max_queued", "enqueue_rate")


def _record(row: RowMapping) -> TenantRecord:
    return TenantRecord(
        name=row["name"],
        weight=row["weight"],
        max_queued=row["max_queued"],
        enqueue_rate=row["enqueue_rate"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _in_tenant(actor: Actor | None, tenant: str) -> Actor | None:
    """``actor`` acting in ``tenant``: tenant changes are audited in the managed tenant."""
    return None if actor is None else dataclasses.replace(actor, tenant=tenant)


class TenantStore(StoreBase):
    """Statements about tenants."""

    def create_tenant(
        self,
        name: str,
        *,
        weight: int = 1,
        max_queued: int | None = None,
        enqueue_rate: str | None = None,
        actor: Actor | None = None,
    ) -> TenantRecord:
        """Store a new tenant; InvalidStateError if the name is taken."""
        values = {
            "name": name,
            "weight": weight,
            "max_queued": max_queued,
            "enqueue_rate": enqueue_rate,
        }
        try:
            with self.transaction() as conn:
                if self._row(conn, name) is not None:
                    raise InvalidStateError(f"tenant {name!r} already exists")
                conn.execute(sa.insert(TENANTS).values(**values))
                row = self._row(conn, name)
                assert row is not None
                write_audit(
                    conn,
                    _in_tenant(actor, name),
                    "tenant.create",
                    "tenant",
                    [name],
                    {k: values[k] for k in _COLUMNS},
                )
        except IntegrityError as exc:  # a concurrent create won the race
            raise InvalidStateError(f"tenant {name!r} already exists") from exc
        self._tenants_changed()
        return _record(row)

    def get_tenant(self, name: str) -> TenantRecord:
        """The tenant ``name``; UnknownTenantError if there is none."""
        with self.connection() as conn:
            row = self._row(conn, name)
        if row is None:
            raise UnknownTenantError(name)
        return _record(row)

    def list_tenants(self) -> list[TenantRecord]:
        """Every tenant, by name (the worker's ``--tenants '*'`` rotation reads this)."""
        with self.connection() as conn:
            rows = conn.execute(sa.select(TENANTS).order_by(TENANTS.c.name)).mappings().all()
        return [_record(row) for row in rows]

    def update_tenant(
        self, name: str, changes: Mapping[str, Any], *, actor: Actor | None = None
    ) -> TenantRecord:
        """Change ``weight``, ``max_queued`` and/or ``enqueue_rate`` (None clears a quota).

        A changed ``enqueue_rate`` starts its bucket afresh (full), so the new rate applies at
        once. UnknownTenantError if there is no such tenant.
        """
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"not a tenant setting: {', '.join(sorted(unknown))}")
        with self.transaction() as conn:
            before = self._row(conn, name, lock=True)
            if before is None:
                raise UnknownTenantError(name)
            if changes:
                conn.execute(
                    sa.update(TENANTS)
                    .where(TENANTS.c.name == name)
                    .values(**changes, updated_at=db_now())
                )
                if "enqueue_rate" in changes and changes["enqueue_rate"] != before["enqueue_rate"]:
                    conn.execute(sa.delete(QUOTA_STATE).where(QUOTA_STATE.c.tenant == name))
                write_audit(
                    conn, _in_tenant(actor, name), "tenant.update", "tenant", [name], dict(changes)
                )
            row = self._row(conn, name)
        assert row is not None
        self._tenants_changed()
        return _record(row)

    def delete_tenant(self, name: str, *, actor: Actor | None = None) -> None:
        """Delete the tenant ``name`` with its queue state, quota bucket and revoked API keys.

        Refused (InvalidStateError, naming what is left) for ``default`` and while the tenant
        holds any task (whatever its status: prune or delete them first), any schedule or any
        API key not revoked. UnknownTenantError if there is no such tenant.
        """
        if name == DEFAULT_TENANT:
            raise InvalidStateError("the default tenant cannot be deleted")
        with self.transaction() as conn:
            if self._row(conn, name, lock=True) is None:
                raise UnknownTenantError(name)
            held = self._held(conn, name)
            if held:
                raise InvalidStateError(
                    f"tenant {name!r} still holds {' and '.join(held)}; "
                    "remove them first (nothing was deleted)"
                )
            conn.execute(sa.delete(API_KEYS).where(API_KEYS.c.tenant == name))
            conn.execute(sa.delete(QUEUES).where(QUEUES.c.tenant == name))
            conn.execute(sa.delete(QUOTA_STATE).where(QUOTA_STATE.c.tenant == name))
            conn.execute(sa.delete(TENANTS).where(TENANTS.c.name == name))
            write_audit(conn, _in_tenant(actor, name), "tenant.delete", "tenant", [name])
        self._tenants_changed()

    def queued_counts(self, tenant: str | None = None) -> dict[str, int]:
        """Tasks waiting to run (queued, delayed or retrying) per tenant that has any (only
        ``tenant``'s when given); reads ``ix_tasks_tenant_status_id``."""
        stmt = (
            sa.select(TASKS.c.tenant, sa.func.count())
            .where(TASKS.c.status.in_(WAITING_STATUSES))
            .group_by(TASKS.c.tenant)
        )
        if tenant is not None:
            stmt = stmt.where(TASKS.c.tenant == tenant)
        with self.connection() as conn:
            return {tenant: int(count) for tenant, count in conn.execute(stmt)}

    # --- helpers ------------------------------------------------------------------------------
    def _tenants_changed(self) -> None:
        """Forget the quotas this process cached (:class:`~taskrt.store.quotas.QuotaStore`)."""
        self.__dict__.pop("_quota_cache", None)

    def _row(self, conn: Connection, name: str, *, lock: bool = False) -> RowMapping | None:
        stmt = sa.select(TENANTS).where(TENANTS.c.name == name)
        if lock and self.is_postgresql:
            stmt = stmt.with_for_update()
        return conn.execute(stmt).mappings().first()

    @staticmethod
    def _held(conn: Connection, name: str) -> list[str]:
        """What keeps tenant ``name`` from being deleted, for the error message."""
        held = []
        for what, table, extra in (
            ("tasks", TASKS, ()),
            ("schedules", SCHEDULES, ()),
            ("API keys", API_KEYS, (API_KEYS.c.revoked_at.is_(None),)),
        ):
            probe = sa.select(sa.literal(1)).where(table.c.tenant == name, *extra).limit(1)
            if conn.execute(probe).first() is not None:
                held.append(what)
        return held


__all__ = ["WAITING_STATUSES", "TenantStore"]
