"""The audit log: written in the same transaction as the change it records."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskrt.records import DEFAULT_TENANT, Actor
from taskrt.store.base import AUDIT, StoreBase


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log row."""

    id: int
    created_at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    request_id: str | None
    client_ip: str | None
    details: dict[str, Any] = field(default_factory=dict)
    tenant: str = DEFAULT_TENANT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "request_id": self.request_id,
            "client_ip": self.client_ip,
            "details": self.details,
            "tenant": self.tenant,
        }


def write_audit(
    conn: Connection,
    actor: Actor | None,
    action: str,
    target_type: str,
    target_ids: Sequence[str | uuid.UUID | None],
    details: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    *,
    tenant: str | None = None,
) -> None:
    """Insert one audit row per target (nothing when there is no actor), in ``tenant``'s
    trail (the tenant of the rows changed; None: the actor's tenant)."""
    if actor is None or not target_ids:
        return
    per_target = (
        list(details) if isinstance(details, Sequence) else [details or {}] * len(target_ids)
    )
    conn.execute(
        sa.insert(AUDIT),
        [
            {
                "tenant": actor.tenant if tenant is None else tenant,
                "actor": actor.name,
                "action": action,
                "target_type": target_type,
                "target_id": None if target is None else str(target),
                "request_id": actor.request_id,
                "client_ip": actor.client_ip,
                "details": extra,
            }
            for target, extra in zip(target_ids, per_target, strict=True)
        ],
    )


class AuditStore(StoreBase):
    """Reading the audit log."""

    def list_audit(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target_id: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
        tenant: str | None = DEFAULT_TENANT,
    ) -> list[AuditRecord]:
        """``tenant``'s audit rows (None: every tenant's, for operators), newest first,
        filtered and paginated by ``before_id`` (keyset)."""
        stmt = sa.select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)
        if tenant is not None:
            stmt = stmt.where(AUDIT.c.tenant == tenant)
        if action:
            stmt = stmt.where(AUDIT.c.action == action)
        if actor:
            stmt = stmt.where(AUDIT.c.actor == actor)
        if target_id:
            stmt = stmt.where(AUDIT.c.target_id == target_id)
        if before_id is not None:
            stmt = stmt.where(AUDIT.c.id < before_id)
        with self.connection() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            AuditRecord(
                id=row["id"],
                created_at=row["created_at"],
                actor=row["actor"],
                action=row["action"],
                target_type=row["target_type"],
                target_id=row["target_id"],
                request_id=row["request_id"],
                client_ip=row["client_ip"],
                details=row["details"] or {},
                tenant=row["tenant"],
            )
            for row in rows
        ]
