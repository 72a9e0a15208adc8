"""Making API keys: the key format, its hash, and storing a new key.

A key looks like ``trk_<prefix>_<secret>``: ``prefix`` is 8 random hex digits that identify the
key (shown in listings and the audit log, safe to log), ``secret`` is 32 random bytes from
:mod:`secrets`. The key exists once, when it is made; the database keeps only the prefix and the
SHA-256 of the whole key (why SHA-256 suffices is explained in the ``apikey`` auth plugin).

This lives in the core, not in the ``apikey`` plugin that checks keys, because the core makes
keys too (``taskrt dev`` prints one for local use) and the core never imports a plugin.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

from taskrt.auth import Role
from taskrt.exceptions import ValidationError
from taskrt.records import DEFAULT_TENANT, Actor
from taskrt.store import ApiKeyRecord, Store

KEY_PATTERN = re.compile(r"^trk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
"""What a key looks like; group 1 is its prefix."""


def new_key() -> tuple[str, str]:
    """A fresh key and its prefix."""
    prefix = secrets.token_hex(4)
    return f"trk_{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key`` (what the database stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(
    store: Store,
    *,
    name: str,
    role: Role | str,
    actor: Actor | None = None,
    tenant: str = DEFAULT_TENANT,
) -> tuple[ApiKeyRecord, str]:
    """Make and store a key bound to ``tenant`` (with an ``apikey.create`` audit row); returns
    its record and the key itself, the only time it exists. An operator key (cross-tenant)
    belongs to the default tenant; the caller checks that ``tenant`` exists."""
    role = Role(role)  # ValueError for an unknown role
    if role is Role.OPERATOR and tenant != DEFAULT_TENANT:
        raise ValidationError(
            f"an operator key acts in every tenant: create it in the {DEFAULT_TENANT!r} tenant, "
            f"not {tenant!r}"
        )
    key, prefix = new_key()
    extra = {} if tenant == DEFAULT_TENANT else {"tenant": tenant}
    record = store.create_api_key(
        key_id=uuid.uuid4(),
        name=name,
        role=role.value,
        prefix=prefix,
        key_hash=hash_key(key),
        actor=actor,
        **extra,
    )
    return record, key


__all__ = ["KEY_PATTERN", "create_api_key", "hash_key", "new_key"]
