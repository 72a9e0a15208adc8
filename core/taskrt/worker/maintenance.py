"""The maintenance thread every worker runs: promote, reap, relay, mark silent workers offline
and, now and then, reconcile. Each step is safe to run in every worker at once. (Pruning the
history has a thread of its own: :class:`taskrt.prune.AutoPruner`.)

Runs a pass reaped are reported as the "runs lost" event, with the retry or dead letter that
followed each (docs/concepts/events.md); metrics and log lines about them are its subscribers."""

from __future__ import annotations

import logging
import threading
import time

from taskrt.events import Events
from taskrt.plugins import Observers
from taskrt.queue.base import QueueBackend

log = logging.getLogger("taskrt.maintenance")


class Maintenance:
    """Runs :meth:`QueueBackend.maintain` every ``interval`` seconds on its own thread."""

    def __init__(
        self,
        backend: QueueBackend,
        observers: Observers,
        *,
        interval: float,
        reconcile_interval: float,
    ) -> None:
        self.backend = backend
        self.observers = observers
        self.events = Events(observers)
        self.interval = interval
        self.reconcile_interval = reconcile_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskrt-maintenance", daemon=True)

    def start(self) -> None:
        """Start the thread (its first pass reconciles)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self) -> None:
        next_reconcile = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            reconcile = now >= next_reconcile
            try:
                report = self.backend.maintain(reconcile=reconcile)
                if reconcile:
                    next_reconcile = now + self.reconcile_interval
                if report.any():
                    log.info("maintenance: %s", report)
                self.events.runs_lost(report.lost)  # counted and logged by its subscribers
            except Exception as exc:  # a store or Redis outage: try again next pass
                log.warning("maintenance pass failed: %s", exc)
            self._stop.wait(self.interval)
