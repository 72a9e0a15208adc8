"""Managing tenants: create, list, change and delete them, with their weights and quotas.

Operators only: the command line (which has database access, so it is an operator by
construction) and ``/api/v1/tenants`` with an operator key. Every change is audited in the
managed tenant. Input is checked here, each problem named with its field, before the store's
CHECK constraints could refuse it.

Quotas (docs/how-to/tenants.md): ``max_queued`` caps the tasks waiting to run (queued, delayed
or retrying) and ``enqueue_rate`` (``"600/minute"``) the tasks created per period; None means
unlimited. They are checked in the enqueue transaction (:mod:`taskrt.store.quotas`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskrt import limits
from taskrt.exceptions import ValidationError
from taskrt.records import Actor, TenantRecord
from taskrt.settings_values import parse_rate
from taskrt.store import Store

MAX_QUEUED_LIMIT = 1_000_000
"""The largest ``max_queued``: refusing an enqueue near the limit reads up to that many index
entries (plan risk 5), so a larger cap would make the check itself slow."""

SETTINGS = ("weight", "max_queued", "enqueue_rate")
"""What an update may change."""

_NAME = re.compile(limits.TENANT_NAME_PATTERN)


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a tenant, or None if it can."""
    if not isinstance(name, str):
        return "must be a string"
    if name in limits.RESERVED_TENANTS:
        return f"{name!r} is reserved"
    if not _NAME.match(name):
        return (
            f"{name[:80]!r} is not a tenant name: 1 to {limits.TENANT_NAME_MAX} lower-case "
            "letters, digits, '_' or '-', starting with a letter or digit"
        )
    return None


def setting_problems(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every problem with the weight and quotas in ``values`` (a key left out is not checked),
    each with its field as ``loc``."""
    problems: list[dict[str, Any]] = []

    def bad(field: str, msg: str) -> None:
        problems.append({"loc": [field], "msg": msg})

    if "weight" in values:
        weight = values["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int):
            bad("weight", "must be an integer")
        elif not 1 <= weight <= limits.TENANT_WEIGHT_MAX:
            bad("weight", f"must be between 1 and {limits.TENANT_WEIGHT_MAX}, got {weight}")
    if "max_queued" in values and values["max_queued"] is not None:
        cap = values["max_queued"]
        if isinstance(cap, bool) or not isinstance(cap, int):
            bad("max_queued", "must be an integer (or null for no limit)")
        elif not 0 <= cap <= MAX_QUEUED_LIMIT:
            bad("max_queued", f"must be between 0 and {MAX_QUEUED_LIMIT}, got {cap}")
    if "enqueue_rate" in values and values["enqueue_rate"] is not None:
        rate = values["enqueue_rate"]
        if not isinstance(rate, str):
            bad("enqueue_rate", "must be a string such as 600/minute (or null for no limit)")
        else:
            try:
                parse_rate(rate)
            except ValueError as exc:
                bad("enqueue_rate", str(exc))
    return problems


def _check(values: Mapping[str, Any], name: str | None = None) -> None:
    problems = setting_problems(values)
    if name is not None:
        why = name_problem(name)
        if why is not None:
            problems.insert(0, {"loc": ["name"], "msg": why})
    if problems:
        detail = "; ".join(f"{p['loc'][0]}: {p['msg']}" for p in problems)
        raise ValidationError(f"invalid tenant: {detail}", problems)


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """A tenant with how many of its tasks wait to run now (what ``max_queued`` counts)."""

    tenant: TenantRecord
    queued: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the CLI's ``--json``)."""
        return {**self.tenant.to_dict(), "queued": self.queued}


class TenantService:
    """Create, read, change and delete tenants (operators only; every change audited)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        name: str,
        *,
        weight: int = 1,
        max_queued: int | None = None,
        enqueue_rate: str | None = None,
        actor: Actor | None = None,
    ) -> TenantRecord:
        """A new tenant. ValidationError names each bad field; InvalidStateError if the name
        is taken."""
        values = {"weight": weight, "max_queued": max_queued, "enqueue_rate": enqueue_rate}
        _check(values, name)
        return self.store.create_tenant(
            name,
            weight=weight,
            max_queued=max_queued,
            enqueue_rate=_normal_rate(enqueue_rate),
            actor=actor,
        )

    def get(self, name: str) -> TenantRecord:
        """The tenant ``name``; UnknownTenantError if there is none."""
        return self.store.get_tenant(name)

    def all(self) -> list[TenantRecord]:
        """Every tenant, by name."""
        return self.store.list_tenants()

    def usage(self) -> list[TenantUsage]:
        """Every tenant with its count of waiting tasks."""
        counts = self.store.queued_counts()
        return [TenantUsage(t, counts.get(t.name, 0)) for t in self.store.list_tenants()]

    def usage_of(self, name: str) -> TenantUsage:
        """One tenant with its count of waiting tasks; UnknownTenantError if there is none."""
        tenant = self.store.get_tenant(name)
        return TenantUsage(tenant, self.store.queued_counts(name).get(name, 0))

    def update(
        self, name: str, changes: Mapping[str, Any], *, actor: Actor | None = None
    ) -> TenantRecord:
        """Change some of ``weight``, ``max_queued`` and ``enqueue_rate`` (None clears a
        quota; a weight cannot be cleared). UnknownTenantError if there is no such tenant."""
        unknown = sorted(set(changes) - set(SETTINGS))
        if unknown:
            raise ValidationError(
                f"not a tenant setting: {', '.join(unknown)}",
                [{"loc": [key], "msg": "not a tenant setting"} for key in unknown],
            )
        if "weight" in changes and changes["weight"] is None:
            raise ValidationError(
                "invalid tenant: weight: cannot be cleared (1 is the default)",
                [{"loc": ["weight"], "msg": "cannot be cleared (1 is the default)"}],
            )
        _check(changes)
        normal = dict(changes)
        if "enqueue_rate" in normal:
            normal["enqueue_rate"] = _normal_rate(normal["enqueue_rate"])
        return self.store.update_tenant(name, normal, actor=actor)

    def delete(self, name: str, *, actor: Actor | None = None) -> None:
        """Delete ``name`` (InvalidStateError for ``default``, or while it holds tasks,
        schedules or unrevoked keys: nothing is deleted then)."""
        self.store.delete_tenant(name, actor=actor)


def _normal_rate(rate: str | None) -> str | None:
    return None if rate is None else rate.strip()


__all__ = [
    "MAX_QUEUED_LIMIT",
    "SETTINGS",
    "TenantService",
    "TenantUsage",
    "name_problem",
    "setting_problems",
]
