"""Writing outcomes in batches: one thread groups finishes over a few milliseconds and writes
each group with one store transaction and one Redis pipeline."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from taskrt.queue.base import FinishReport, QueueBackend, RunFinish, WorkerIdentity
from taskrt.worker.execution import ActiveRun

log = logging.getLogger("taskrt.worker")

BATCH_WINDOW = 0.002
BATCH_MAX = 256
RETRY_BACKOFF_MAX = 5.0


class Finisher:
    """A thread that writes run outcomes; retries a batch until the store takes it."""

    def __init__(
        self,
        backend: QueueBackend,
        identity: WorkerIdentity,
        on_written: Callable[[list[ActiveRun], FinishReport], None],
    ) -> None:
        self.backend = backend
        self.identity = identity
        self.on_written = on_written
        self._queue: queue.SimpleQueue[tuple[ActiveRun, RunFinish] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="taskrt-finisher", daemon=True)
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, active: ActiveRun, finish: RunFinish) -> None:
        """Queue an outcome for writing."""
        with self._lock:
            self._pending += 1
        self._queue.put((active, finish))

    @property
    def pending(self) -> int:
        """Outcomes not yet written."""
        return self._pending

    def wait_flushed(self, timeout: float) -> bool:
        """Wait until every submitted outcome is written (or ``timeout`` passes)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(
        self, first: tuple[ActiveRun, RunFinish]
    ) -> tuple[list[tuple[ActiveRun, RunFinish]], bool]:
        batch = [first]
        deadline = time.monotonic() + BATCH_WINDOW
        while len(batch) < BATCH_MAX:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, stopping = self._collect(first)
            self._write(batch)
        # drain anything left after the stop marker
        leftover = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftover.append(item)
        if leftover:
            self._write(leftover)

    def _write(self, batch: list[tuple[ActiveRun, RunFinish]]) -> None:
        delay = 0.05
        while True:
            try:
                report = self.backend.finish([f for _, f in batch], self.identity)
                break
            except Exception as exc:  # the store or Redis is down: keep the outcomes, retry
                log.error(
                    "writing %d outcome(s) failed (%s); retrying in %.2f s", len(batch), exc, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, RETRY_BACKOFF_MAX)
        try:
            self.on_written([a for a, _ in batch], report)
        except Exception:  # hooks and bookkeeping must not stop the writer
            log.exception("after-write bookkeeping failed")
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()
