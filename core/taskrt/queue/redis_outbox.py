"""Clearing the outbox rows of runs the Redis backend placed, off the enqueue path.

After a producer's own dispatch succeeds, its outbox rows are no longer needed. Deleting them
in the enqueue call would cost a second transaction per enqueue, so they are handed to a
background thread that deletes them in batches. Losing such a delete (the process dies first)
only means the relay dispatches those runs once more, which is harmless: a run id already in
flight is skipped by the dispatch script, and a claim is fenced on the run's status.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from collections.abc import Sequence

from taskrt.store import Store

log = logging.getLogger("taskrt.outbox")

BATCH_DELAY = 0.05


class OutboxCleaner:
    """Collects dispatched run ids and deletes their outbox rows every ``BATCH_DELAY`` s."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[uuid.UUID] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, run_ids: Sequence[uuid.UUID]) -> None:
        """Schedule the outbox rows of ``run_ids`` for deletion."""
        if not run_ids:
            return
        with self._lock:
            if self._closed:
                self._delete(list(run_ids))
                return
            self._pending.extend(run_ids)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="taskrt-outbox", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)
        self._wake.set()

    def _take(self) -> list[uuid.UUID]:
        with self._lock:
            taken, self._pending = self._pending, []
            return taken

    def _delete(self, run_ids: list[uuid.UUID]) -> None:
        try:
            self.store.delete_outbox(run_ids)
        except Exception as exc:  # the relay dispatches them once more: harmless
            log.warning("could not clear %d outbox row(s): %s", len(run_ids), exc)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.closed:
                return
            self._closing.wait(BATCH_DELAY)  # gather a batch (cut short only by close())
            taken = self._take()
            if taken:
                self._delete(taken)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def flush(self) -> None:
        """Delete everything pending now, in the calling thread."""
        taken = self._take()
        if taken:
            self._delete(taken)

    def close(self) -> None:
        """Flush and stop the thread."""
        with self._lock:
            self._closed = True
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2)
        self.flush()
