"""Renewing leases, recording the worker's heartbeat and relaying cancellation requests.

Two threads with their own connections, so handler code cannot starve them and neither waits
for the other:

- the store thread renews every held lease in the store (the truth: its lease is what the
  reaper checks and what fences an outcome), touches the worker row and relays cancellations;
- the index thread (backends that keep a second copy of the leases, Redis) renews the same
  leases there on its own schedule. A Redis that hangs or fails delays nothing in the store,
  and never counts as a failed renewal: the store alone decides whether a lease is still ours.

The store thread also keeps, per run, when its lease was last renewed (or taken): a run whose
lease is older than the TTL by the worker's own monotonic clock (the worker was frozen, or the
store was away) is one the worker can no longer vouch for, and must not start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable

from taskrt import logs
from taskrt.queue.base import QueueBackend
from taskrt.records import ClaimedRun, RenewReport, WorkerIdentity, WorkerStatus
from taskrt.store import Store
from taskrt.worker.execution import ActiveRun

log = logging.getLogger("taskrt.worker")


class Heartbeat:
    """Every tick: renew all held leases (store and index independently); every heartbeat
    interval: touch the worker row."""

    def __init__(
        self,
        *,
        backend: QueueBackend,
        store: Store,
        identity: WorkerIdentity,
        heartbeat_interval: float,
        held: Callable[[], list[ActiveRun]],
        status: Callable[[], WorkerStatus],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.backend = backend
        self.store = store
        self.identity = identity
        self.tick = max(min(heartbeat_interval, identity.lease_ttl / 3), 0.05)
        self.heartbeat_interval = heartbeat_interval
        self.held = held
        self.status = status
        self.loop = loop
        self._index = backend.keeps_index  # a second copy of the leases, renewed apart
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name="taskrt-heartbeat", daemon=True)]
        if self._index:
            self._threads.append(
                threading.Thread(target=self._index_loop, name="taskrt-renew-index", daemon=True)
            )
        # run id -> monotonic time a store renewal that covered it began (its lease runs from
        # there); only the store thread writes it
        self._renewed: dict[uuid.UUID, float] = {}
        self.store_renewed_at = time.monotonic()
        """When the last successful store renewal began (the lease-renewal-age gauge)."""
        self.index_renewed_at = time.monotonic()
        """When the last successful index (Redis) renewal began."""
        self._index_failing = False
        self.last_beat = time.monotonic()
        """When the worker row was last touched (registration counts): the heartbeat-age gauge."""

    def start(self) -> None:
        """Start the threads."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the threads (one stuck on a hung server is left behind: it is a daemon)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    # --- vouching -------------------------------------------------------------------------
    def vouches(self, active: ActiveRun, now: float | None = None) -> bool:
        """True while this worker can vouch for the lease of ``active`` by its own clock: the
        lease was taken, or last renewed in the store, less than the lease TTL ago. Both times
        are taken before the statement that set the lease, so the store's lease lasts at least
        as long as this says."""
        now = time.monotonic() if now is None else now
        since = max(active.leased_monotonic, self._renewed.get(active.run.run_id, 0.0))
        return now - since < self.identity.lease_ttl

    # --- the store thread -----------------------------------------------------------------
    def _loop(self) -> None:
        next_beat = 0.0
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            self._renew(now)
            if now >= next_beat:
                try:
                    self.store.heartbeat(self.identity.id, self.status())
                    self.last_beat = time.monotonic()
                    next_beat = now + self.heartbeat_interval
                except Exception as exc:  # the database is away; try again next tick
                    log.warning("heartbeat failed: %s", exc)

    def _renew_in_store(self, runs: list[ClaimedRun]) -> RenewReport:
        if not self._index:  # the backend's leases live in the store alone
            return self.backend.renew(runs, self.identity)
        ours, cancel = self.store.renew_leases(
            [r.run_id for r in runs], worker_id=self.identity.id, lease_ttl=self.identity.lease_ttl
        )
        return RenewReport(
            lost=[r.run_id for r in runs if r.run_id not in ours], cancel_requested=sorted(cancel)
        )

    def _renew(self, now: float) -> None:
        active = [a for a in self.held() if not a.handed_back]
        self._renewed = {a.run.run_id: t for a in active if (t := self._renewed.get(a.run.run_id))}
        if not active:
            self.store_renewed_at = now
            return
        try:
            report = self._renew_in_store([a.run for a in active])
        except Exception as exc:
            log.warning("lease renewal failed: %s", exc)
            later = time.monotonic()
            for a in active:
                # our lease has expired by our own clock: stop trusting it (see "Which clock
                # decides what" in docs/concepts/lifecycle.md)
                if not a.lease_lost and not self.vouches(a, later):
                    a.lease_lost = True
                    log.error(
                        "run %s: lease expired while renewals failed",
                        a.run.run_id,
                        extra=logs.run_fields(a.run, self.identity.id),
                    )
            return
        self.store_renewed_at = now
        lost_ids = set(report.lost)
        for a in active:
            if a.run.run_id not in lost_ids:
                self._renewed[a.run.run_id] = now
        by_id: dict[uuid.UUID, ActiveRun] = {a.run.run_id: a for a in active}
        for run_id in report.lost:
            lost = by_id.get(run_id)
            if lost is not None and not lost.lease_lost:
                lost.lease_lost = True
                if lost.settled:
                    # its outcome is being written (or just was, which ends the lease): the
                    # finisher reports a rejected outcome itself, so no false alarm here
                    continue
                log.warning(
                    "run %s: lease taken over; its outcome will not be written",
                    run_id,
                    extra=logs.run_fields(lost.run, self.identity.id),
                )
        for run_id in report.cancel_requested:
            target = by_id.get(run_id)
            if target is not None and not target.cancel_requested:
                log.info(
                    "run %s: cancellation requested",
                    run_id,
                    extra=logs.run_fields(target.run, self.identity.id),
                )
                target.request_cancel(self.loop)

    # --- the index thread -----------------------------------------------------------------
    def _index_loop(self) -> None:
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            # only the runs the store last said are ours: the store decides, Redis follows
            runs = [a.run for a in self.held() if not a.handed_back and not a.lease_lost]
            if not runs:
                self.index_renewed_at = now
                continue
            try:
                taken = self.backend.renew_index(runs, self.identity)
            except Exception as exc:  # Redis is away: the store's leases hold the runs meanwhile
                if not self._index_failing:
                    log.warning("lease renewal in the queue index failed: %s", exc)
                self._index_failing = True
                continue
            if self._index_failing:
                log.info("lease renewal in the queue index works again")
            self._index_failing = False
            self.index_renewed_at = now
            for run_id in taken:
                # the store still says the run is ours; its next renewal there decides
                log.debug("run %s: the queue index names another lease holder", run_id)
