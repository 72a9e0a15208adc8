"""The scheduler process: ``taskrt scheduler``.

Each tick fires every due slot in one transaction (see
:meth:`~taskrt.schedule_service.ScheduleService.fire_due`), then sleeps until the next slot is
due or one tick passes, whichever is sooner. Any number of schedulers may run: each slot fires
once because its (schedule, fire time) row is unique, and ``SKIP LOCKED`` keeps them from
waiting on each other. Schedule changes made through the API or CLI are read at the next tick.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from taskrt import metrics
from taskrt.schedule_service import FireReport, ScheduleService

log = logging.getLogger("taskrt.scheduler")


class Scheduler:
    """Fires schedules until asked to stop."""

    def __init__(self, schedules: ScheduleService, *, tick: float) -> None:
        self.schedules = schedules
        self.tick = tick
        self._stop = threading.Event()
        self._signals = 0
        self.last_report: FireReport | None = None

    def request_stop(self) -> None:
        """Finish the current tick and exit."""
        self._stop.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals >= 2:
            os._exit(1)
        log.info("scheduler stopping")
        self.request_stop()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop after the current tick; a second one exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def run_once(self) -> FireReport:
        """One tick: fire what is due."""
        report = self.schedules.fire_due()  # its fires are counted and logged as events
        metrics.scheduler_ticked()
        self.last_report = report
        return report

    def run(self) -> int:
        """Tick until stopped; returns 0."""
        log.info("scheduler started (tick %.2f s)", self.tick)
        backoff = self.tick
        while not self._stop.is_set():
            try:
                self.run_once()
                wait = self.schedules.seconds_until_next_fire()
                backoff = self.tick
            except Exception as exc:  # the database is away: try again shortly
                log.error("scheduler tick failed: %s; retrying in %.1f s", exc, backoff)
                wait = backoff
                backoff = min(backoff * 2, 5.0)
            self._stop.wait(self.tick if wait is None else min(wait, self.tick))
        log.info("scheduler stopped")
        return 0
