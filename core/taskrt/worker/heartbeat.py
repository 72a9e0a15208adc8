"""The heartbeat thread: renews leases, records the worker's heartbeat and relays
cancellation requests. It has its own connections, so handler code cannot starve it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable

from taskrt import logs
from taskrt.queue.base import QueueBackend, WorkerIdentity
from taskrt.records import WorkerStatus
from taskrt.store import Store
from taskrt.worker.execution import ActiveRun

log = logging.getLogger("taskrt.worker")


class Heartbeat:
    """Every tick: renew all held leases; every heartbeat interval: touch the worker row."""

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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskrt-heartbeat", daemon=True)
        self._last_renewed = time.monotonic()
        self.last_beat = time.monotonic()
        """When the worker row was last touched (registration counts): the heartbeat-age gauge."""

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(5)

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

    def _renew(self, now: float) -> None:
        active = [a for a in self.held() if not a.handed_back]
        if not active:
            self._last_renewed = now
            return
        try:
            report = self.backend.renew([a.run for a in active], self.identity)
        except Exception as exc:
            log.warning("lease renewal failed: %s", exc)
            if now - self._last_renewed > self.identity.lease_ttl:
                # our leases have expired by our own clock: stop trusting them (DESIGN.md 4.4)
                for a in active:
                    if not a.lease_lost:
                        a.lease_lost = True
                        log.error(
                            "run %s: lease expired while renewals failed",
                            a.run.run_id,
                            extra=logs.run_fields(a.run, self.identity.id),
                        )
            return
        self._last_renewed = now
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
