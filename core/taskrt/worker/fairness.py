"""Fair fetching across tenants: which queue addresses a worker serving several tenants asks,
in which order and for how many runs (docs/how-to/tenants.md).

A worker started with ``--tenants a,b`` or ``--tenants '*'`` builds each fetch's plan here:

- **levels first**: the queues in the order the fetcher chose (strict priority, or a fresh
  weighted order), so queue priority still holds inside a tenant;
- **pass 1, within a level**: each of the batch's ``limit`` runs goes to the tenant smooth
  weighted round robin picks for it (nginx style: every tenant's current value grows by its
  weight, the largest wins and gives back the sum of the weights of the level's tenants not
  known to be empty). The picks go on across fetches, so each tenant gets runs (and leads)
  in proportion to its weight even with batches of one, and equal tenants alternate run by
  run; with more tenants than ``limit``, the next fetch's picks go to the others;
- **pass 2** asks the same tenants again, then the level's other tenants, for the rest of
  ``limit``, uncapped: a fetch skips an address that came back short, so only tenants that
  filled their share are asked again, and a lone busy tenant still fills whole batches;
- **empty hints**: an address that had nothing ready and nothing delayed is left out until a
  wake-up names it or :data:`HINT_SECONDS` pass, so a ``'*'`` worker does not ask every idle
  tenant's queues on every fetch.

A worker serving one tenant takes the fast path: ``[(address, limit) for each queue]``, the
very calls a single-tenant worker always made.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from taskrt.records import TenantRecord, address

log = logging.getLogger("taskrt.worker")

HINT_SECONDS = 2.0
"""How long an address found empty is left out of the plans (unless a wake-up names it)."""

TENANT_REFRESH_SECONDS = 10.0
"""How often a worker serving several tenants re-reads the tenants table (``'*'``: which
tenants exist; every list: their weights). A deleted tenant leaves the rotation then."""

ALL_TENANTS = "*"


class TenantRotation:
    """Builds fetch plans over one or more tenants (see the module docstring).

    ``tenants`` is the explicit list, or None for every tenant (``'*'``); ``weights``
    overrides the tenants table's weights (``--tenants a:3,b``); ``load`` reads the tenants
    table (the worker passes ``store.list_tenants``).
    """

    def __init__(
        self,
        tenants: Sequence[str] | None,
        *,
        weights: Mapping[str, int] | None = None,
        load: Callable[[], Sequence[TenantRecord]] | None = None,
        refresh: float = TENANT_REFRESH_SECONDS,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tenants is not None and not tenants:
            raise ValueError("a rotation needs at least one tenant")
        self.all_tenants = tenants is None
        self._explicit = list(tenants) if tenants is not None else None
        self._overrides = dict(weights or {})
        self._load = load
        self._refresh = refresh
        self._rng = rng or random.Random()  # noqa: S311 - a start position, not security
        self._clock = clock
        self._next_refresh = 0.0
        self.tenants: list[str] = []
        """The tenants served, in rotation order (a random start per worker)."""
        self.weights: dict[str, int] = {}
        self._current: dict[str, dict[str, int]] = {}  # level -> tenant -> SWRR value
        self._hints: dict[str, float] = {}  # address -> hinted empty until (clock)
        if self._explicit is not None:
            self._set_tenants([(t, self._overrides.get(t, 1)) for t in self._explicit])

    @property
    def single(self) -> str | None:
        """The one tenant served, or None when the rotation spans several (or all)."""
        if self._explicit is not None and len(self._explicit) == 1:
            return self._explicit[0]
        return None

    # --- the tenants ----------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """Re-read the tenants table if it is time (``'*'``: the tenants; a list: their
        weights). A failed read keeps what the rotation had."""
        if self.single is not None or self._load is None:
            return
        now = self._clock()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self._refresh
        try:
            records = list(self._load())
        except Exception as exc:  # the store is away: keep serving the tenants known
            log.warning(
                "could not read the tenants (%s); keeping the %d known", exc, len(self.tenants)
            )
            return
        table = {r.name: r.weight for r in records}
        if self._explicit is not None:
            pairs = [(t, self._overrides.get(t, table.get(t, 1))) for t in self._explicit]
        else:
            pairs = [(name, self._overrides.get(name, weight)) for name, weight in table.items()]
        self._set_tenants(pairs)

    def _set_tenants(self, pairs: Iterable[tuple[str, int]]) -> None:
        pairs = list(pairs)
        names = [name for name, _w in pairs]
        self.weights = {name: max(int(w), 1) for name, w in pairs}
        if set(names) != set(self.tenants):
            kept = [t for t in self.tenants if t in self.weights]
            new = [t for t in names if t not in kept]
            self._rng.shuffle(new)  # a random start: workers do not move in lockstep
            self.tenants = kept + new
            for current in self._current.values():
                for gone in set(current) - set(self.weights):
                    del current[gone]

    # --- empty hints ----------------------------------------------------------------------
    def hint_empty(self, addresses: Iterable[str]) -> None:
        """These addresses had nothing ready and nothing delayed: leave them out for a while."""
        until = self._clock() + HINT_SECONDS
        for addr in addresses:
            self._hints[addr] = until

    def woken(self, addresses: Iterable[str]) -> None:
        """Wake-ups named these addresses: ask them again at once."""
        for addr in addresses:
            self._hints.pop(addr, None)

    @property
    def hinted(self) -> bool:
        """True while some address is left out as empty (expired hints are dropped here)."""
        if self._hints:
            now = self._clock()
            self._hints = {addr: until for addr, until in self._hints.items() if until > now}
        return bool(self._hints)

    def _empty(self, addr: str, now: float) -> bool:
        until = self._hints.get(addr)
        if until is None:
            return False
        if now >= until:
            del self._hints[addr]
            return False
        return True

    # --- plans ----------------------------------------------------------------------------
    def plan(self, levels: Sequence[str], limit: int) -> list[tuple[str, int]]:
        """The fetch plan for queues ``levels`` (in priority order) and ``limit`` runs: a list
        of (address, most runs) for the fetch to follow in order."""
        one = self.single
        if one is not None:
            return [(address(one, queue), limit) for queue in levels]
        now = self._clock()
        plan: list[tuple[str, int]] = []
        for queue in levels:
            live = [t for t in self.tenants if not self._empty(address(t, queue), now)]
            if not live:
                continue
            caps = self._shares(queue, live, limit)
            plan.extend((address(t, queue), cap) for t, cap in caps.items())  # pass 1
            # pass 2: the rest of the batch from whoever has more, the same order first
            lead = live.index(next(iter(caps)))
            rest = [t for t in live[lead:] + live[:lead] if t not in caps]
            plan.extend((address(t, queue), limit) for t in [*caps, *rest])
        return plan

    def _shares(self, level: str, live: list[str], limit: int) -> dict[str, int]:
        """Pass 1: each of ``limit`` runs goes to the tenant smooth weighted round robin
        picks for it (the picks go on across fetches, so small batches keep the weights
        too). Returns tenant -> runs, in the order of their first pick."""
        current = self._current.setdefault(level, {})
        weights = [(t, self.weights.get(t, 1)) for t in live]
        total = sum(w for _t, w in weights)
        caps: dict[str, int] = {}
        for _ in range(max(limit, 1)):
            best: int | None = None
            lead = live[0]
            for tenant, weight in weights:
                value = current.get(tenant, 0) + weight
                current[tenant] = value
                if best is None or value > best:
                    best, lead = value, tenant
            current[lead] -= total
            caps[lead] = caps.get(lead, 0) + 1
        return caps


def describe(rotation: TenantRotation) -> str:
    """The served tenants for the startup log line, by name (the rotation's own order starts
    at a random place)."""
    if rotation.all_tenants:
        return "* (every tenant)"
    return ",".join(
        f"{t}:{rotation.weights[t]}" if rotation.weights.get(t, 1) != 1 else t
        for t in sorted(rotation.tenants)
    )


__all__ = [
    "ALL_TENANTS",
    "HINT_SECONDS",
    "TENANT_REFRESH_SECONDS",
    "TenantRotation",
    "describe",
]
