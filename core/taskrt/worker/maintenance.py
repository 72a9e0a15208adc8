"""The maintenance thread every worker runs: promote, reap, relay, mark silent workers offline
and, now and then, reconcile. Each step is safe to run in every worker at once."""

from __future__ import annotations

import logging
import threading
import time

from taskrt import logs, metrics
from taskrt.plugins import Observers
from taskrt.queue.base import QueueBackend
from taskrt.records import DeadLetterEvent, MaintenanceReport, RetryEvent

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
                logs.log_lost(log, report.lost)
                metrics.runs_lost(report.lost)
                self._notify(report)
            except Exception as exc:  # a store or Redis outage: try again next pass
                log.warning("maintenance pass failed: %s", exc)
            self._stop.wait(self.interval)

    def _notify(self, report: MaintenanceReport) -> None:
        for lost in report.lost:
            if lost.next_run is not None and self.observers.has("on_retry"):
                self.observers.notify(
                    "on_retry",
                    event=RetryEvent(
                        task_id=lost.task_id,
                        task_name=lost.task_name,
                        queue=lost.queue,
                        failed_run_id=lost.run_id,
                        attempt=lost.attempt,
                        next_run_id=lost.next_run.run_id,
                        delay=0.0,
                        reason="lost",
                    ),
                )
            elif lost.outcome == "dead_letter" and self.observers.has("on_dead_letter"):
                self.observers.notify(
                    "on_dead_letter",
                    event=DeadLetterEvent(
                        task_id=lost.task_id,
                        task_name=lost.task_name,
                        queue=lost.queue,
                        run_id=lost.run_id,
                        attempt=lost.attempt,
                        reason="lost",
                    ),
                )
