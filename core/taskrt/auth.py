"""Auth backends: the small typed interface the ``register_auth_backends`` hook registers."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from taskrt.records import DEFAULT_TENANT

if TYPE_CHECKING:
    from taskrt.settings import Settings
    from taskrt.store import Store


class Role(StrEnum):
    """What an identity may do: readers read, producers also create and cancel tasks,
    admins do everything within their tenant, operators do everything in every tenant
    (managing tenants included)."""

    READER = "reader"
    PRODUCER = "producer"
    ADMIN = "admin"
    OPERATOR = "operator"

    def allows(self, needed: Role) -> bool:
        """True if this role includes ``needed``."""
        order = (Role.READER, Role.PRODUCER, Role.ADMIN, Role.OPERATOR)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request, as an auth backend established it."""

    subject: str
    role: Role
    backend: str
    credential: str | None = None
    """A stable, non-secret name of the exact credential used (an API key's prefix), when
    several credentials may share one subject; audit rows and rate-limit buckets use it."""
    tenant: str = DEFAULT_TENANT
    """The tenant the credential is bound to: every request acts in it (an operator may
    choose another with the ``X-Taskrt-Tenant`` header)."""

    @property
    def operator(self) -> bool:
        """Whether this identity may act in any tenant."""
        return self.role is Role.OPERATOR

    @property
    def principal(self) -> str:
        """What the audit log and the rate limiter call this caller: ``<backend>:<credential>``
        when the backend names the credential (``apikey:1f2e3d4c``), else
        ``<backend>:<subject>`` (``jwt:alice``), with the tenant in front of a subject outside
        the default tenant (``jwt:acme/alice``: two tenants may have the same subject)."""
        if self.credential:
            return f"{self.backend}:{self.credential}"
        if self.tenant != DEFAULT_TENANT:
            return f"{self.backend}:{self.tenant}/{self.subject}"
        return f"{self.backend}:{self.subject}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an auth backend may look at: the request's headers (lower-cased names) and client IP."""

    headers: Mapping[str, str]
    client_ip: str | None = None

    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, if any."""
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None


@runtime_checkable
class AuthBackend(Protocol):
    """Turns credentials into an identity, or answers ``None`` for "not mine"."""

    def authenticate(self, credentials: Credentials) -> Identity | None:
        """Return the identity, ``None`` if these credentials are not for this backend,
        or raise :class:`AuthenticationFailed` if they are for it but wrong."""
        ...


class AuthenticationFailed(Exception):  # noqa: N818 - reads as a verdict, not a bug
    """Credentials were meant for this backend but are invalid (expired, revoked, forged)."""


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What an auth backend's factory is given: the settings, and the store for backends that
    keep their state in the database (API keys)."""

    settings: Settings
    store: Store


AuthBackendFactory = Callable[[AuthContext], AuthBackend]
"""Builds a backend once per API process; called with an :class:`AuthContext`. Raise
:class:`~taskrt.exceptions.ConfigurationError` when the settings the backend needs are missing."""


class KnownTenants:
    """The names of existing tenants, read from the store at most every ``ttl`` seconds (the
    service checks a scope's tenant with it, the JWT backend a token's tenant claim).

    ``default`` always exists. A name missing from the cached set is looked up once more
    with a fresh read, so a tenant created a moment ago is found at once; a deleted tenant
    stays known for at most ``ttl`` seconds."""

    def __init__(self, store: Store, *, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._names: frozenset[str] = frozenset()
        self._read_at = -math.inf
        self._lock = threading.Lock()

    def exists(self, tenant: str) -> bool:
        """Whether a tenant named ``tenant`` exists."""
        if tenant == DEFAULT_TENANT:
            return True
        with self._lock:
            fresh = time.monotonic() - self._read_at < self.ttl
            if tenant in self._names and fresh:
                return True
            if fresh and time.monotonic() - self._read_at < 0.5:
                return False  # just read: do not let unknown names hammer the database
            self._names = frozenset(self._read())
            self._read_at = time.monotonic()
            return tenant in self._names

    def _read(self) -> list[str]:
        list_tenants = getattr(self.store, "list_tenants", None)
        if list_tenants is not None:
            return [t.name for t in list_tenants()]
        import sqlalchemy as sa  # without the tenants store (older stores): the table itself

        from taskrt.db.models import tenants

        with self.store.connection() as conn:
            return [row[0] for row in conn.execute(sa.select(tenants.c.name))]
