"""The SQL queue backend: the queues are the ``task_runs`` table, in PostgreSQL or SQLite.

Same contract as the Redis backend (strict and weighted priority, delayed runs, leases and
fencing tokens, retries, dead-letter queue, pause, poison budget), with nothing to rebuild: the
queue and the record are the same rows. On PostgreSQL an idle worker LISTENs and producers
NOTIFY, so it wakes within milliseconds; SQLite has no notifications, so a worker polls briefly
(and processes sharing one file wake each other through the poll, the same process at once).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa

from taskrt.queue.base import FetchPlan, Leased, as_plan
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
from taskrt.settings import Settings
from taskrt.store import Store

log = logging.getLogger("taskrt.queue.sql")

NOTIFY_CHANNEL = "taskrt_wake"
SQLITE_POLL_SECONDS = 0.1

# Processes that enqueue and work in one process (``taskrt dev``) wake their own fetcher at once.
_local_wakeups: dict[str, threading.Event] = {}
_local_lock = threading.Lock()


def _local_event(key: str) -> threading.Event:
    with _local_lock:
        return _local_wakeups.setdefault(key, threading.Event())


class _PgListener:
    """A dedicated autocommit connection LISTENing on the wake channel."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.conninfo, autocommit=True)
            self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self.conn

    def start(self) -> None:
        """Start listening (before the first fetch, so no NOTIFY in between is missed)."""
        self._connect()

    def wait(self, timeout: float) -> frozenset[str]:
        """Return on the first notification or after ``timeout`` seconds, with the payloads
        (queue addresses) of the notifications received."""
        woken: set[str] = set()
        try:
            conn = self._connect()
            for note in conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
                woken.add(note.payload)
            for note in conn.notifies(timeout=0):  # drain: the next fetch covers them all
                woken.add(note.payload)
        except psycopg.Error as exc:
            log.warning("LISTEN connection failed (%s); reconnecting", exc)
            self.close()
        return frozenset(woken)

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None


class SqlQueueBackend:
    """Queues in the database itself."""

    keeps_index = False

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.name = f"sql-{store.dialect}"
        self._next_due: float | None = None
        self._local = _local_event(str(store.engine.url))
        self._listener: _PgListener | None = None
        if store.is_postgresql:
            url = store.engine.url.set(drivername="postgresql")
            self._listener = _PgListener(url.render_as_string(hide_password=False))
        self._interrupted = threading.Event()

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> SqlQueueBackend:
        """The backend on the store's own database."""
        return cls(store, settings)

    def ping(self) -> None:
        """The queue is the database: ping it."""
        self.store.ping()

    # --- wake-ups -------------------------------------------------------------------------
    def _notify(self, queues: Sequence[str]) -> None:
        self._local.set()
        if not self.store.is_postgresql or not queues:
            return
        try:
            with self.store.engine.connect() as conn:
                for queue in sorted(set(queues)):
                    conn.execute(
                        sa.text("SELECT pg_notify(:channel, :queue)"),
                        {"channel": NOTIFY_CHANNEL, "queue": queue},
                    )
                conn.commit()
        except sa.exc.SQLAlchemyError as exc:  # a lost wake-up only delays a poll
            log.warning("NOTIFY failed: %s", exc)

    # --- producers ------------------------------------------------------------------------
    def dispatch(self, entries: Sequence[DispatchEntry]) -> None:
        """The committed rows are the queue; only wake idle workers (the NOTIFY payload is
        each queue's address)."""
        self._notify([e.address for e in entries])

    def withdraw(self, entries: Sequence[DispatchEntry]) -> None:
        """Nothing to remove: the cancelled run row is no longer ``queued``."""

    def replayed(
        self, queue: str, task_ids: Sequence[uuid.UUID], entries: Sequence[DispatchEntry]
    ) -> None:
        """The new runs are queued rows already; wake idle workers."""
        self._notify([queue])

    # --- workers --------------------------------------------------------------------------
    def acquire(
        self, plan: Sequence[str] | FetchPlan, limit: int, worker: WorkerIdentity
    ) -> list[ClaimedRun]:
        """Claim up to ``limit`` due runs following ``plan`` (a :data:`FetchPlan`, or
        addresses in priority order), in one transaction."""
        self._local.clear()
        steps = as_plan(plan, limit)
        runs = self.store.claim_next(
            steps,
            limit,
            worker_id=worker.id,
            lease_token=secrets.token_hex(8),
            lease_ttl=worker.lease_ttl,
        )
        if runs:
            self._next_due = None
        else:
            self._next_due = self.store.seconds_until_due(list(dict.fromkeys(a for a, _ in steps)))
        return runs

    def lease(self, plan: Sequence[str] | FetchPlan, limit: int, worker: WorkerIdentity) -> Leased:
        """The two-stage fetch done in one: the claim is the lease, so stage one claims (as
        :meth:`acquire`) and carries the claimed runs to :meth:`claim`. Workers on this
        backend call :meth:`acquire` instead (:attr:`keeps_index` is false)."""
        runs = self.acquire(plan, limit, worker)
        token = runs[0].lease_token if runs else ""
        return Leased(
            token=token,
            entries=[(r.address, str(r.run_id).encode()) for r in runs],
            claimed=runs,
        )

    def claim(self, leased: Leased, worker: WorkerIdentity) -> list[ClaimedRun]:
        """The runs :meth:`lease` claimed already."""
        return list(leased.claimed)

    def unlease(self, leased: Leased, worker: WorkerIdentity) -> int:
        """Hand the claimed runs back (nothing spent), as :meth:`hand_back` does."""
        return self.hand_back(leased.claimed, worker)

    def prepare_wait(self, queues: Sequence[str], *, all_tenants: bool = False) -> None:
        """Start listening for wake-ups before the first fetch (one channel serves every
        queue of every tenant)."""
        if self._listener is not None:
            self._listener.start()

    def wait_for_work(
        self, queues: Sequence[str], timeout: float, *, all_tenants: bool = False
    ) -> frozenset[str]:
        """Wait for a NOTIFY (PostgreSQL), a same-process wake-up, or the earliest due time;
        returns the addresses the NOTIFYs named."""
        if self._next_due is not None and timeout > 0:
            timeout = min(timeout, self._next_due + 0.001)
        if self._interrupted.is_set():
            return frozenset()
        if self._listener is not None:
            return self._listener.wait(timeout)
        self._local.wait(min(timeout, SQLITE_POLL_SECONDS))
        return frozenset()

    def interrupt_wait(self) -> None:
        """Wake the fetcher at shutdown."""
        self._interrupted.set()
        self._local.set()
        if self._listener is not None:
            self._notify(["__interrupt__"])

    def renew(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> RenewReport:
        """Extend this worker's leases in the database; report lost ones and cancellations."""
        if not runs:
            return RenewReport()
        ours, cancel = self.store.renew_leases(
            [r.run_id for r in runs], worker_id=worker.id, lease_ttl=worker.lease_ttl
        )
        return RenewReport(
            lost=[r.run_id for r in runs if r.run_id not in ours],
            cancel_requested=sorted(cancel),
        )

    def renew_index(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> list[uuid.UUID]:
        """No index: the leases live in the store alone, renewed by :meth:`renew`."""
        return []

    def finish(self, finishes: Sequence[RunFinish], worker: WorkerIdentity) -> FinishReport:
        """Write outcomes (fenced); retries are queued rows at once."""
        report = self.store.finish_runs(finishes)
        if report.retries:
            self._notify([e.address for e in report.retries])
        return report

    def hand_back(
        self, runs: Sequence[ClaimedRun], worker: WorkerIdentity, *, delay: float = 0.0
    ) -> int:
        """Return unfinished runs to ``queued`` without spending an attempt (due again after
        ``delay`` seconds)."""
        if delay > 0:
            later = self.store.hand_back_runs(runs, delay)
            # idle workers learn the new due time and wait for it
            self._notify([r.address for r in later])
            return len(later)
        handed = self.store.hand_back_runs(runs)
        self._notify([r.address for r in handed])
        return len(handed)

    # --- operators ------------------------------------------------------------------------
    def pause(self, queue: str) -> None:
        """The store's paused flag is the whole state; nothing else to do."""

    def resume(self, queue: str) -> None:
        """Wake idle workers of ``queue``."""
        self._notify([queue])

    def counts(self, queues: Sequence[str] | None = None) -> list[QueueCounts]:
        """Counts read from the database (``queues``: addresses)."""
        return self.store.queue_counts(queues)

    # --- maintenance ----------------------------------------------------------------------
    def maintain(self, *, reconcile: bool = False) -> MaintenanceReport:
        """Reap expired leases and mark silent workers offline (there is nothing to reconcile:
        the queue and the record are the same rows)."""
        report = MaintenanceReport()
        expired = self.store.expired_running()
        if expired:
            lost = self.store.mark_lost(expired, poison_budget=self.settings.poison_budget)
            report.reaped_lost = len(lost)
            report.lost.extend(lost)
            self._notify([item.next_run.address for item in lost if item.next_run is not None])
        report.workers_offline = self.store.mark_silent_workers_offline(
            self.settings.worker_offline_after
        )
        return report

    def close(self) -> None:
        """Close the LISTEN connection."""
        if self._listener is not None:
            self._listener.close()
