"""Auth backends: the small typed interface the ``register_auth_backends`` hook registers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from taskrt.settings import Settings
    from taskrt.store import Store


class Role(StrEnum):
    """What an identity may do: readers read, producers also create and cancel tasks,
    admins do everything."""

    READER = "reader"
    PRODUCER = "producer"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """True if this role includes ``needed``."""
        order = (Role.READER, Role.PRODUCER, Role.ADMIN)
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

    @property
    def principal(self) -> str:
        """What the audit log and the rate limiter call this caller: ``<backend>:<credential>``
        when the backend names the credential (``apikey:1f2e3d4c``), else
        ``<backend>:<subject>`` (``jwt:alice``)."""
        return f"{self.backend}:{self.credential or self.subject}"


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
