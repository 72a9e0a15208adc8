"""Counting the handler slots a worker has free (``--concurrency``)."""

from __future__ import annotations

import threading


class Slots:
    """A counter of busy slots that the fetcher can wait on."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._busy = 0
        self._cond = threading.Condition()

    @property
    def busy(self) -> int:
        """Slots in use."""
        return self._busy

    def take(self, count: int = 1) -> None:
        """Mark ``count`` slots busy (the caller knows they are free)."""
        with self._cond:
            self._busy += count

    def release(self) -> None:
        """Free one slot."""
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def wait_free(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for a free slot; return how many are free."""
        with self._cond:
            if self._busy >= self.capacity:
                self._cond.wait(timeout)
            return max(self.capacity - self._busy, 0)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every slot to be free; True if they are."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def wake(self) -> None:
        """Wake anyone waiting (at shutdown)."""
        with self._cond:
            self._cond.notify_all()
