"""The worker's watchdog: hard run deadlines and a blocked event loop, enforced off the loop.

A timeout that the event loop enforces fails exactly when it is needed most: a coroutine that
swallows its cancellation never ends, and one that blocks the loop (``time.sleep`` in an
``async def``) stops every timer on it, the timeout's included. So the last word belongs to
this thread, which needs nothing from the loop:

- each run with a timeout is *watched* with a hard deadline (its timeout, plus a short grace for
  an ``async def`` handler's cancellation to take effect); when it passes and the run has not
  settled, ``expire`` is called with the run, here on this thread;
- a probe posted to the loop every quarter second measures whether the loop still runs; when
  one has waited ``stall_after`` seconds, one WARNING names the task holding the loop and the
  line it is stuck on (and ``stalled`` is called), and one INFO says when it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("taskrt.worker")

PROBE_INTERVAL = 0.25


class Watched(Protocol):
    """What the watchdog needs of a run: whether it has settled."""

    @property
    def settled(self) -> bool:
        """True once the run's end was recorded."""
        ...


T = TypeVar("T", bound=Watched)


class Watchdog(Generic[T]):
    """One daemon thread that expires overdue runs and reports a stalled event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        expire: Callable[[T], object],
        stall_after: float,
        stalled: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.loop = loop
        self.expire = expire
        self.stall_after = stall_after
        self.stalled = stalled
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe_sent: float | None = None
        self._stalled_since: float | None = None
        self._loop_thread_id: int | None = None

    # --- deadlines ------------------------------------------------------------------------
    def watch(self, item: T, deadline: float) -> None:
        """Call ``expire(item)`` at ``deadline`` (monotonic) unless it has settled by then."""
        with self._lock:
            first = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._seq), item))
            if len(self._heap) > 256:
                self._compact_locked()
        if first:
            self._wake.set()

    def live(self) -> list[T]:
        """Watched runs that have not settled yet."""
        with self._lock:
            return [item for _, _, item in self._heap if not item.settled]

    def _compact_locked(self) -> None:
        # runs that settled before their deadline leave their entry behind; drop them in bulk
        # when they outnumber the live ones, so a long timeout on a busy worker costs no memory
        live = [entry for entry in self._heap if not entry[2].settled]
        if len(live) * 2 < len(self._heap):
            heapq.heapify(live)
            self._heap = live

    def _due(self, now: float) -> tuple[list[T], float | None]:
        due: list[T] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, _, item = heapq.heappop(self._heap)
                if not item.settled:
                    due.append(item)
            following = self._heap[0][0] if self._heap else None
        return due, following

    # --- the event loop -------------------------------------------------------------------
    def _probe(self, now: float) -> None:
        with self._lock:
            sent = self._probe_sent
            if sent is None:
                self._probe_sent = now
        if sent is None:
            # a closed loop raises RuntimeError: the worker is exiting
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._answer)
            return
        waited = now - sent
        if waited >= self.stall_after and self._stalled_since is None:
            self._stalled_since = sent
            log.warning(
                "the event loop has not run for %.1f s: %s; async handlers and timers wait "
                "until it is free; runs past their deadline are failed meanwhile",
                waited,
                self.describe_holder(),
            )
            self.stalled(waited)

    def _answer(self) -> None:
        """Runs on the loop: the loop is alive."""
        self._loop_thread_id = threading.get_ident()
        with self._lock:
            self._probe_sent = None
            since, self._stalled_since = self._stalled_since, None
        if since is not None:
            log.info("the event loop runs again after %.1f s", time.monotonic() - since)

    def describe_holder(self) -> str:
        """The task running on the loop and the line its thread is on, as far as known."""
        parts = []
        try:
            task = asyncio.current_task(self.loop)
        except RuntimeError:
            task = None
        parts.append(f"task {task.get_name()!r}" if task is not None else "no task (a callback)")
        frame = sys._current_frames().get(self._loop_thread_id or -1)
        if frame is not None:
            where = traceback.extract_stack(frame, limit=1)[-1]
            parts.append(f"at {where.filename}:{where.lineno} in {where.name}")
        return " ".join(parts) + " holds it"

    # --- the thread -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the watchdog thread."""
        self._thread = threading.Thread(target=self._run, name="taskrt-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (whatever is still watched is left to the caller)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            due, following = self._due(now)
            for item in due:
                try:
                    self.expire(item)
                except Exception:  # the watchdog must outlive any run
                    log.exception("expiring an overdue run failed")
            self._probe(now)
            wait = PROBE_INTERVAL if following is None else min(following - now, PROBE_INTERVAL)
            self._wake.wait(max(wait, 0.001))
            self._wake.clear()
