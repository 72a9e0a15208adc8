"""The ``apikey`` auth backend and the ``taskrt apikey create|list|revoke`` commands.

A key looks like ``trk_<prefix>_<secret>``: ``prefix`` is 8 random hex digits that identify the
key (shown in listings and the audit log, safe to log), ``secret`` is 32 random bytes from
:mod:`secrets`. The key is shown once, when it is made; the database keeps only the prefix and
the SHA-256 of the whole key. Making keys is the core's :mod:`taskrt.apikeys`; this module
checks them and adds the commands.

Why SHA-256 and not bcrypt or argon2: those slow hashes exist to protect low-entropy secrets
that people choose, where an attacker holding the hashes can try likely passwords. A key here
carries 256 random bits; no amount of guessing finds a preimage of its hash, so a slow hash would
add nothing but a few milliseconds of CPU to every request. The comparison runs in constant time
(:func:`hmac.compare_digest`), and an unknown prefix is compared against a dummy hash, so the
time taken does not tell a guessed key from a wrong one.

A key is accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. A bearer token that
is not shaped like a key is "not mine", so another backend (``jwt``) may take it; an
``X-API-Key`` header is always this backend's business.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable

import click

from taskrt import hookimpl
from taskrt.apikeys import KEY_PATTERN, create_api_key, hash_key, new_key
from taskrt.auth import (
    AuthBackendFactory,
    AuthContext,
    AuthenticationFailed,
    Credentials,
    Identity,
    Role,
)
from taskrt.exceptions import TaskrtError
from taskrt.records import DEFAULT_TENANT
from taskrt.store import Store

log = logging.getLogger("taskrt.auth.apikey")

# Making keys lives in the core (taskrt.apikeys), which `taskrt dev` uses too; the names stay
# importable from here for code written against this module.
__all__ = ["KEY_PATTERN", "ApiKeyBackend", "create_api_key", "hash_key", "new_key"]

TOUCH_INTERVAL = 60.0
"""Seconds between two writes of a key's ``last_used_at``."""
_DUMMY_HASH = hashlib.sha256(b"no key has this hash").hexdigest()


class ApiKeyBackend:
    """Checks API keys against the store."""

    def __init__(self, store: Store, *, touch_interval: float = TOUCH_INTERVAL) -> None:
        self.store = store
        self.touch_interval = touch_interval
        self._touched: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_context(cls, context: AuthContext) -> ApiKeyBackend:
        """The factory registered as ``apikey``."""
        return cls(context.store)

    def authenticate(self, credentials: Credentials) -> Identity | None:
        """The key's identity; None for a bearer token that is not a key; AuthenticationFailed
        for a key that is unknown, wrong or revoked."""
        header_key = credentials.headers.get("x-api-key")
        presented = header_key if header_key is not None else credentials.bearer_token()
        if presented is None:
            return None
        match = KEY_PATTERN.match(presented.strip())
        if match is None:
            if header_key is not None:
                raise AuthenticationFailed("the X-API-Key header does not hold an API key")
            return None
        prefix = match.group(1)
        record = self.store.api_key_by_prefix(prefix)
        expected = record.key_hash if record is not None else _DUMMY_HASH
        matches = hmac.compare_digest(expected, hash_key(presented.strip()))
        if record is None or not matches:
            raise AuthenticationFailed(f"no API key matches (prefix {prefix})")
        if record.revoked:
            raise AuthenticationFailed(f"API key {prefix} ({record.name}) is revoked")
        self._touch(record.id)
        # two keys may share a name: the prefix tells them apart in audit rows and rate limits
        return Identity(
            subject=record.name,
            role=Role(record.role),
            backend="apikey",
            credential=prefix,
            tenant=getattr(record, "tenant", DEFAULT_TENANT),
        )

    def _touch(self, key_id: uuid.UUID) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < self.touch_interval:
                return
            self._touched[key_id] = now
        try:
            self.store.touch_api_key(key_id, min_interval=self.touch_interval)
        except TaskrtError as exc:  # last_used_at is informational: never fail a request on it
            log.warning("could not record the use of API key %s: %s", key_id, exc)


@hookimpl
def register_auth_backends(
    register: Callable[[str, AuthBackendFactory], None],
) -> None:
    """Register the ``apikey`` backend."""
    register("apikey", ApiKeyBackend.from_context)


# --- command line -------------------------------------------------------------------------


def _store() -> Store:
    from taskrt.backends import open_store
    from taskrt.cli.state import get_state

    return open_store(get_state().settings)


def _tenant(tenant: str | None) -> str:
    """The tenant a command acts in: ``--tenant`` of the command, else the global one
    (``taskrt --tenant``, TASKRT_TENANT, the ``tenant`` setting); it must exist."""
    from taskrt.cli.state import get_state

    state = get_state()
    return state.check_tenant(tenant if tenant is not None else state.tenant)


_TENANT_HELP = "The tenant (default: the global --tenant, TASKRT_TENANT, else 'default')."


@click.group("apikey")
def apikey_group() -> None:
    """Create, list and revoke API keys for the HTTP API."""


@apikey_group.command("create")
@click.option(
    "--name", required=True, help="What the key is for (shown in lists and the audit log)."
)
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="reader: read; producer: also create and cancel tasks; admin: everything in its "
    "tenant; operator: everything in every tenant (only in the default tenant).",
)
@click.option("--tenant", default=None, help="The tenant the key is bound to. " + _TENANT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the key included).")
def create_command(name: str, role: str, tenant: str | None, as_json: bool) -> None:
    """Create a key bound to a tenant and print it. It is shown this once: store it now."""
    from taskrt.cli.output import print_json
    from taskrt.cli.state import get_state

    bound = _tenant(tenant)
    store = _store()
    try:
        record, key = create_api_key(
            store, name=name, role=role, actor=get_state().actor(tenant=bound), tenant=bound
        )
    finally:
        store.dispose()
    if as_json:
        print_json({**record.to_dict(), "key": key})
        return
    click.echo(key)
    click.echo(
        f"created API key {record.id} ({record.name}, role {record.role}, tenant {bound}, "
        f"prefix {record.prefix}); it cannot be shown again",
        err=True,
    )


@apikey_group.command("list")
@click.option("--tenant", default=None, help="List this tenant's keys. " + _TENANT_HELP)
@click.option("--all-tenants", is_flag=True, help="List the keys of every tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(tenant: str | None, all_tenants: bool, as_json: bool) -> None:
    """A tenant's keys (or every tenant's): name, role, tenant, prefix, when it was made and
    last used, and whether it is revoked."""
    from taskrt.cli.output import print_json, print_table
    from taskrt.exceptions import ValidationError

    if all_tenants and tenant is not None:
        raise ValidationError("give --tenant or --all-tenants, not both")
    scope = None if all_tenants else _tenant(tenant)
    store = _store()
    try:
        keys = store.list_api_keys(tenant=scope)
    finally:
        store.dispose()
    if as_json:
        print_json([k.to_dict() for k in keys])
        return
    print_table(
        "API keys",
        ["id", "name", "role", "tenant", "prefix", "created", "last used", "revoked"],
        [
            (
                str(k.id),
                k.name,
                k.role,
                getattr(k, "tenant", DEFAULT_TENANT),
                k.prefix,
                k.created_at.isoformat(timespec="seconds"),
                k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "",
                k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
            )
            for k in keys
        ],
    )


@apikey_group.command("revoke")
@click.argument("key_id")
@click.option("--tenant", default=None, help="The tenant of the key. " + _TENANT_HELP)
def revoke_command(key_id: str, tenant: str | None) -> None:
    """Revoke key KEY_ID (its id from `taskrt apikey list`) of the tenant; it stops working at
    once. Another tenant's key is "no such key"."""
    from taskrt.cli.state import get_state
    from taskrt.exceptions import ValidationError

    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise ValidationError(f"{key_id!r} is not an API key id (a UUID)") from None
    bound = _tenant(tenant)
    store = _store()
    try:
        record = store.revoke_api_key(parsed, actor=get_state().actor(tenant=bound), tenant=bound)
    finally:
        store.dispose()
    click.echo(f"revoked API key {record.id} ({record.name}, prefix {record.prefix})")


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``taskrt apikey``."""
    cli.add_command(apikey_group)
