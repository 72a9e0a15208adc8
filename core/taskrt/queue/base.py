"""The queue-backend interface and the small records that cross it.

The worker, the service layer and the maintenance loop talk to a :class:`QueueBackend` only;
none of them knows whether the queues live in Redis or in the database. PostgreSQL (or SQLite)
stays the truth in both cases: a backend's writes to the store go through :mod:`taskrt.store`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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
)


class QueueBackend(Protocol):
    """The operations the worker, the service layer and maintenance need from a queue.

    Every method that writes the store does so in one transaction and fences run outcomes by
    the lease token; every method may be called from several processes at once.
    """

    name: str
    needs_outbox: bool
    """True when enqueue must write outbox rows (the queue lives outside the database)."""

    # --- producers ------------------------------------------------------------------------
    def dispatch(self, entries: Sequence[DispatchEntry]) -> None:
        """Place committed queued runs in their queues (idempotent)."""
        ...

    def withdraw(self, entries: Sequence[DispatchEntry]) -> None:
        """Remove cancelled runs from their queues (best effort; claims are fenced anyway)."""
        ...

    def dead_lettered(self, queue: str, task_ids: Sequence[uuid.UUID]) -> None:
        """Record tasks that went to the dead-letter queue outside a worker."""
        ...

    def replayed(
        self, queue: str, task_ids: Sequence[uuid.UUID], entries: Sequence[DispatchEntry]
    ) -> None:
        """Take replayed tasks out of the dead-letter queue and dispatch their new runs."""
        ...

    # --- workers --------------------------------------------------------------------------
    def acquire(
        self, queues: Sequence[str], limit: int, worker: WorkerIdentity
    ) -> list[ClaimedRun]:
        """Fetch and claim up to ``limit`` runs, trying ``queues`` in the order given."""
        ...

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Block until work may be available in ``queues`` or ``timeout`` seconds pass."""
        ...

    def interrupt_wait(self) -> None:
        """Wake a thread blocked in :meth:`wait_for_work` (used at shutdown)."""
        ...

    def renew(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> RenewReport:
        """Extend the leases of ``runs``; report lost leases and cancellation requests."""
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
        """Release connections."""
        ...
