"""The queue-backend interface (the records that cross it live in :mod:`taskrt.records`).

The worker, the service layer and the maintenance loop talk to a :class:`QueueBackend` only;
none of them knows whether the queues live in Redis or in the database. PostgreSQL (or SQLite)
stays the truth in both cases: a backend's writes to the store go through :mod:`taskrt.store`.

Every ``queue``/``queues`` argument of this interface is a queue *address*
(:func:`taskrt.records.address`): the bare queue name for the default tenant, ``tenant/queue``
for any other, so a single-tenant deployment passes exactly the queue names it always did.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from taskrt.records import (
    ClaimedRun,
    DispatchEntry,
    FinishReport,
    MaintenanceReport,
    QueueCounts,
    RenewReport,
    RunFinish,
    WorkerIdentity,
    split_address,
)

FetchPlan = Sequence[tuple[str, int]]
"""What to fetch, in order: (queue address, most runs to take from it). The same address may
come twice (the fair fetch's second pass); a fetch skips an address that came back short."""


def as_plan(queues: Sequence[str] | FetchPlan, limit: int) -> list[tuple[str, int]]:
    """A fetch plan from either a plan or plain addresses in priority order (each address
    then may give up to ``limit``, exactly today's fetch)."""
    return [(q, limit) if isinstance(q, str) else (q[0], int(q[1])) for q in queues]


@dataclass(frozen=True, slots=True)
class Leased:
    """Runs a backend leased for a worker in stage one of a fetch and not yet claimed.

    ``entries`` are (queue address, entry as the queue holds it) in fetch order; an entry of
    a Redis queue may be garbage, so it stays raw until the claim parses it. A backend that
    claims in the store at once (SQL) carries the runs it claimed in ``claimed``. ``empty``
    names the addresses this fetch found with nothing ready and nothing delayed (or paused):
    a fair fetch skips them for a while (:mod:`taskrt.worker.fairness`).
    """

    token: str
    entries: list[tuple[str, bytes]]
    claimed: list[ClaimedRun] = field(default_factory=list)
    empty: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.entries)

    def queues(self) -> list[str]:
        """The queue name (without its tenant) of each leased entry, in fetch order."""
        return [split_address(addr)[1] for addr, _raw in self.entries]

    def tenant_queues(self) -> list[tuple[str, str]]:
        """(tenant, queue) of each leased entry, in fetch order."""
        return [split_address(addr) for addr, _raw in self.entries]


class QueueBackend(Protocol):
    """The operations the worker, the service layer and maintenance need from a queue.

    Every method that writes the store does so in one transaction and fences run outcomes by
    the lease token; every method may be called from several processes at once.
    """

    name: str
    keeps_index: bool
    """True when the queues live outside the store, in an index that holds its own copy of
    the leases (Redis). Then a worker fetches in two stages (:meth:`lease`, then
    :meth:`claim` beside the next lease) and renews the index's leases on their own schedule
    (:meth:`renew_index`); otherwise it calls :meth:`acquire` and :meth:`renew` alone."""

    # --- producers ------------------------------------------------------------------------
    def dispatch(self, entries: Sequence[DispatchEntry]) -> None:
        """Place committed queued runs in their queues (idempotent). A backend whose queues
        live outside the store also clears the runs' outbox rows once they are placed (the
        outbox is its own concern: the store writes the rows, the backend's relay and this
        method retire them)."""
        ...

    def withdraw(self, entries: Sequence[DispatchEntry]) -> None:
        """Remove cancelled runs from their queues (best effort; claims are fenced anyway)."""
        ...

    def replayed(
        self, queue: str, task_ids: Sequence[uuid.UUID], entries: Sequence[DispatchEntry]
    ) -> None:
        """Take replayed tasks out of the dead-letter queue and dispatch their new runs (their
        outbox rows cleared as in :meth:`dispatch`)."""
        ...

    # --- workers --------------------------------------------------------------------------
    def acquire(
        self, plan: Sequence[str] | FetchPlan, limit: int, worker: WorkerIdentity
    ) -> list[ClaimedRun]:
        """Fetch and claim up to ``limit`` runs, following ``plan`` (a :data:`FetchPlan`, or
        addresses in priority order)."""
        ...

    def lease(self, plan: Sequence[str] | FetchPlan, limit: int, worker: WorkerIdentity) -> Leased:
        """Stage one of a two-stage fetch: lease up to ``limit`` runs, following ``plan`` (as
        in :meth:`acquire`), without claiming them in the store yet."""
        ...

    def claim(self, leased: Leased, worker: WorkerIdentity) -> list[ClaimedRun]:
        """Stage two: claim what :meth:`lease` leased (fenced on status ``queued``); what
        cannot be claimed is released. If the store is away, the leased runs go back to
        their queues and the error is raised."""
        ...

    def unlease(self, leased: Leased, worker: WorkerIdentity) -> int:
        """Put leased runs that were never started back at the head of their queues, nothing
        spent; returns how many went back."""
        ...

    def prepare_wait(self, queues: Sequence[str], *, all_tenants: bool = False) -> None:
        """Start listening for wake-ups on ``queues`` (before the first fetch, so no wake-up
        sent between a fetch and a wait is missed); ``all_tenants``: on every queue of every
        tenant, including tenants created later (a ``--tenants '*'`` worker)."""
        ...

    def wait_for_work(
        self, queues: Sequence[str], timeout: float, *, all_tenants: bool = False
    ) -> frozenset[str]:
        """Block until work may be available in ``queues`` (or, ``all_tenants``, anywhere) or
        ``timeout`` seconds pass. Returns the addresses the wake-ups received named (empty
        when they name none); ``timeout`` 0 only collects wake-ups already there."""
        ...

    def interrupt_wait(self) -> None:
        """Wake a thread blocked in :meth:`wait_for_work` (used at shutdown)."""
        ...

    def renew(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> RenewReport:
        """Extend the leases of ``runs``; report lost leases and cancellation requests."""
        ...

    def renew_index(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> list[uuid.UUID]:
        """The index's half of :meth:`renew` (see :attr:`keeps_index`), for a worker that
        renews in the store on its own schedule: extend the index's leases of ``runs``.
        Returns the runs whose index lease another worker holds (nothing without an index)."""
        ...

    def finish(self, finishes: Sequence[RunFinish], worker: WorkerIdentity) -> FinishReport:
        """Write run outcomes (fenced) and move queue entries accordingly."""
        ...

    def hand_back(
        self, runs: Sequence[ClaimedRun], worker: WorkerIdentity, *, delay: float = 0.0
    ) -> int:
        """Return unfinished runs to their queues without spending an attempt; with ``delay``,
        due again only after that many seconds (by the store's clock)."""
        ...

    # --- operators ------------------------------------------------------------------------
    def pause(self, queue: str) -> None:
        """Stop workers fetching from ``queue``."""
        ...

    def resume(self, queue: str) -> None:
        """Let workers fetch from ``queue`` again."""
        ...

    def counts(self, queues: Sequence[str] | None = None) -> list[QueueCounts]:
        """Sizes of every known queue (or of ``queues``)."""
        ...

    # --- maintenance ----------------------------------------------------------------------
    def maintain(self, *, reconcile: bool = False) -> MaintenanceReport:
        """Promote due runs, reap expired leases, relay the outbox; reconcile if asked."""
        ...

    def close(self) -> None:
        """Release connections (and finish clearing outbox rows still pending)."""
        ...
