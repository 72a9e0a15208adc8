"""API keys: stored as a hash plus a short prefix, never as the key itself.

Making keys and checking them is the ``apikey`` auth plugin's business; this module only keeps
the rows. Creating and revoking a key write their audit row in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskrt.db.types import db_now, db_now_plus
from taskrt.exceptions import (
    InvalidStateError,
    NotFoundError,
    UnknownTenantError,
    ValidationError,
)
from taskrt.jsonlimits import text_problem
from taskrt.records import DEFAULT_TENANT, Actor
from taskrt.store.audit import write_audit
from taskrt.store.base import API_KEYS, TENANTS, StoreBase

ROLES = ("reader", "producer", "admin", "operator")


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One API key as stored: its prefix and hash, never the key."""

    id: uuid.UUID
    name: str
    role: str
    prefix: str
    key_hash: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    tenant: str = DEFAULT_TENANT
    """The tenant the key acts in (an operator key may pick another per request)."""

    @property
    def revoked(self) -> bool:
        """True once the key has been revoked."""
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the hash."""
        return {
            "id": str(self.id),
            "name": self.name,
            "role": self.role,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "tenant": self.tenant,
        }


def _record(row: Mapping[Any, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        prefix=row["prefix"],
        key_hash=row["key_hash"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        tenant=row["tenant"],
    )


class ApiKeyStore(StoreBase):
    """Statements about API keys."""

    def create_api_key(
        self,
        *,
        key_id: uuid.UUID,
        name: str,
        role: str,
        prefix: str,
        key_hash: str,
        actor: Actor | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> ApiKeyRecord:
        """Store a new key of ``tenant`` (its prefix and hash, with an ``apikey.create`` audit
        row in that tenant's trail). An unknown tenant raises UnknownTenantError."""
        if role not in ROLES:
            raise ValidationError(
                f"unknown role {role!r}; roles are {', '.join(ROLES)}",
                [{"loc": ["role"], "msg": f"unknown role {role!r}"}],
            )
        if not name or len(name) > 200:
            raise ValidationError(
                "a key name must be 1 to 200 characters",
                [{"loc": ["name"], "msg": "must be 1 to 200 characters"}],
            )
        why = text_problem(name)
        if why is not None:
            raise ValidationError(f"a key name: {why}", [{"loc": ["name"], "msg": why}])
        with self.transaction() as conn:
            known = conn.execute(sa.select(TENANTS.c.name).where(TENANTS.c.name == tenant)).first()
            if known is None:
                raise UnknownTenantError(tenant)
            row = (
                conn.execute(
                    sa.insert(API_KEYS)
                    .values(
                        id=key_id,
                        tenant=tenant,
                        name=name,
                        role=role,
                        prefix=prefix,
                        key_hash=key_hash,
                    )
                    .returning(API_KEYS)
                )
                .mappings()
                .one()
            )
            write_audit(
                conn,
                actor,
                "apikey.create",
                "api_key",
                [key_id],
                {"name": name, "role": role, "prefix": prefix},
                tenant=tenant,
            )
        return _record(row)

    def api_key_by_prefix(self, prefix: str) -> ApiKeyRecord | None:
        """The key whose prefix is ``prefix`` (revoked or not), or None. Read on every request
        an API key authenticates, so PostgreSQL reads it through psycopg directly
        (:class:`taskrt.store.dialects.postgresql.PsycopgReads`)."""
        row = self.sql.reads.api_key(prefix)
        return None if row is None else _record(row)

    def list_api_keys(
        self, *, include_revoked: bool = True, tenant: str | None = DEFAULT_TENANT
    ) -> list[ApiKeyRecord]:
        """``tenant``'s keys (None: every tenant's, for operators), newest first."""
        stmt = sa.select(API_KEYS).order_by(API_KEYS.c.created_at.desc(), API_KEYS.c.id)
        if tenant is not None:
            stmt = stmt.where(API_KEYS.c.tenant == tenant)
        if not include_revoked:
            stmt = stmt.where(API_KEYS.c.revoked_at.is_(None))
        with self.connection() as conn:
            return [_record(row) for row in conn.execute(stmt).mappings()]

    def revoke_api_key(
        self,
        key_id: uuid.UUID,
        *,
        actor: Actor | None = None,
        tenant: str | None = DEFAULT_TENANT,
    ) -> ApiKeyRecord:
        """Revoke a key of ``tenant`` (None: of any tenant, for operators), with an
        ``apikey.revoke`` audit row; it stops working at once. Another tenant's key is not
        found."""
        lookup = sa.select(API_KEYS).where(API_KEYS.c.id == key_id)
        if tenant is not None:
            lookup = lookup.where(API_KEYS.c.tenant == tenant)
        with self.transaction() as conn:
            row = conn.execute(lookup.with_for_update()).mappings().first()
            if row is None:
                raise NotFoundError(f"no API key with id {key_id}")
            if row["revoked_at"] is not None:
                raise InvalidStateError(f"API key {key_id} is already revoked")
            revoked = (
                conn.execute(
                    sa.update(API_KEYS)
                    .where(API_KEYS.c.id == key_id)
                    .values(revoked_at=db_now())
                    .returning(API_KEYS)
                )
                .mappings()
                .one()
            )
            write_audit(
                conn,
                actor,
                "apikey.revoke",
                "api_key",
                [key_id],
                {"name": row["name"], "prefix": row["prefix"]},
                tenant=row["tenant"],
            )
        return _record(revoked)

    def touch_api_key(self, key_id: uuid.UUID, *, min_interval: float = 60.0) -> bool:
        """Set ``last_used_at`` to now unless it was set less than ``min_interval`` seconds ago
        (so a busy key costs one write a minute, not one per request); True if it wrote."""
        stale = sa.or_(
            API_KEYS.c.last_used_at.is_(None),
            API_KEYS.c.last_used_at < db_now_plus(sa.literal(-min_interval, sa.Float())),
        )
        with self.transaction() as conn:
            result = conn.execute(
                sa.update(API_KEYS)
                .where(API_KEYS.c.id == key_id, stale)
                .values(last_used_at=db_now())
            )
            return bool(result.rowcount)


__all__ = ["ApiKeyRecord", "ApiKeyStore"]
