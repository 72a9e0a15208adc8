"""Who is calling: the chain of auth backends, and the role each route needs.

The backends named by ``TASKRT_AUTH_BACKENDS`` (default ``apikey``) are looked up among those
plugins registered through ``register_auth_backends`` and built once per process. For each
request they are asked in order; the first to return an identity wins, one that says the
credentials are its own but wrong (:class:`~taskrt.auth.AuthenticationFailed`) ends the search.

- no credentials at all -> 401 with ``WWW-Authenticate``
- credentials nobody accepts (malformed header, unknown, revoked or expired) -> 401
- a known identity whose role is too low for the route -> 403

Requests are rate-limited before the role check: per identity when one was established, per
client IP otherwise, so failed guesses are throttled too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import HTTPException

from taskrt.auth import AuthBackend, AuthContext, AuthenticationFailed, Credentials, Identity, Role
from taskrt.exceptions import ConfigurationError
from taskrt.jsonlimits import text_problem
from taskrt.plugins import Registry
from taskrt.settings import Settings
from taskrt.store import Store

log = logging.getLogger("taskrt.api.auth")

ANONYMOUS_ADMIN = Identity(subject="anonymous", role=Role.ADMIN, backend="disabled")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="taskrt"'}
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
MAX_PRINCIPAL = 200
"""Longest ``<backend>:<subject>`` the audit log's ``actor`` column holds."""


class AuthChain:
    """The configured auth backends, asked in order."""

    def __init__(self, backends: list[tuple[str, AuthBackend]], *, disabled: bool = False) -> None:
        self.backends = backends
        self.disabled = disabled

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry, store: Store) -> AuthChain:
        """Build each backend ``settings.auth_backends`` names; ConfigurationError naming the
        installed ones if a name is unknown, or if the list is empty while auth is on."""
        if settings.auth_disabled:
            return cls([], disabled=True)
        if not settings.auth_backends:
            raise ConfigurationError(
                "TASKRT_AUTH_BACKENDS is empty: name at least one auth backend (e.g. apikey), "
                "or set TASKRT_AUTH_DISABLED=true for a local experiment"
            )
        context = AuthContext(settings=settings, store=store)
        backends: list[tuple[str, AuthBackend]] = []
        for name in settings.auth_backends:
            factory = registry.auth_backends.get(name)
            if factory is None:
                known = ", ".join(sorted(registry.auth_backends)) or "none (are plugins blocked?)"
                raise ConfigurationError(
                    f"unknown auth backend {name!r} in TASKRT_AUTH_BACKENDS; installed: {known}"
                )
            backend = factory(context)
            if not isinstance(backend, AuthBackend):
                origin = registry.origin("auth", name)
                where = origin.describe() if origin else "its plugin"
                raise ConfigurationError(
                    f"auth backend {name!r} from {where} has no authenticate(credentials) method"
                )
            backends.append((name, backend))
        return cls(backends)

    def authenticate(self, credentials: Credentials) -> Identity:
        """The caller's identity; HTTPException 401 when there is none."""
        if self.disabled:
            return ANONYMOUS_ADMIN
        for name, backend in self.backends:
            try:
                identity = backend.authenticate(credentials)
            except AuthenticationFailed as exc:
                # the reason is for the operator; the client learns only that it failed
                log.info("auth backend %s refused credentials: %s", name, exc)
                raise HTTPException(401, "invalid credentials", headers=CHALLENGE) from None
            if identity is not None:
                why = subject_problem(identity)
                if why is not None:  # refused here rather than a 500 at the first audit row
                    log.info("auth backend %s gave an identity taskrt cannot record: %s", name, why)
                    raise HTTPException(401, "invalid credentials", headers=CHALLENGE)
                return identity
        if any(credentials.headers.get(h) for h in CREDENTIAL_HEADERS):
            raise HTTPException(
                401, "the credentials were not recognised by any auth backend", headers=CHALLENGE
            )
        raise HTTPException(
            401,
            "authentication required: send Authorization: Bearer <token> or X-API-Key",
            headers=CHALLENGE,
        )


def credentials_from(headers: Mapping[str, str], client_ip: str | None) -> Credentials:
    """Credentials as backends see them: lower-cased header names and the client IP."""
    return Credentials(headers={k.lower(): v for k, v in headers.items()}, client_ip=client_ip)


def require_role(identity: Identity, needed: Role) -> None:
    """HTTPException 403 unless ``identity`` holds ``needed`` (or more)."""
    if not identity.role.allows(needed):
        raise HTTPException(
            403, f"this needs the {needed.value} role; the caller has {identity.role.value}"
        )


def actor_name(identity: Identity) -> str:
    """How an identity appears in the audit log: its :attr:`~taskrt.auth.Identity.principal`
    (``apikey:1f2e3d4c``, ``jwt:alice``)."""
    return identity.principal


def subject_problem(identity: Identity) -> str | None:
    """Why the audit log could not record ``identity``, or None: its principal must be text a
    database can store and fit the audit log's actor column."""
    principal = identity.principal
    why = text_problem(principal)
    if why is not None:
        return f"subject: {why}"
    if len(principal) > MAX_PRINCIPAL:
        return f"subject: {principal[:40]}... is longer than {MAX_PRINCIPAL} characters"
    return None
