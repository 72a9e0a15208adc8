"""Slots and the prefetch buffer (``--concurrency`` and ``TASKRT_WORKER_PREFETCH``).

A worker runs at most ``capacity`` runs at once. It may hold up to ``prefetch`` more runs that
it already claimed and that wait, in fetch order, for a slot: when a run ends, the next buffered
run starts at once in the same step, without waiting for a fetch. This keeps slots busy while
the next fetch is on its way, and lets the fetcher claim in batches.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class SlotPool(Generic[T]):
    """Counts busy slots and holds prefetched items waiting for one."""

    def __init__(self, capacity: int, prefetch: int = 0) -> None:
        self.capacity = capacity
        self.prefetch = prefetch
        self._busy = 0
        self._reserved = 0
        self._buffer: deque[T] = deque()
        self._cond = threading.Condition()
        # wake a waiting fetcher only once a batch worth of room opened (or the worker ran
        # dry), not on every finished run: a busy worker fetches in batches
        self._wake_at = max(1, (capacity + prefetch) // 2)

    @property
    def busy(self) -> int:
        """Slots in use."""
        return self._busy

    @property
    def buffered(self) -> int:
        """Items waiting for a slot."""
        return len(self._buffer)

    def room(self) -> int:
        """How many more items may be taken now (free slots plus free buffer places, less
        what is reserved for items on their way)."""
        return self.capacity + self.prefetch - self._busy - len(self._buffer) - self._reserved

    def reserve(self, count: int) -> None:
        """Hold room for ``count`` items that are still on their way (being claimed)."""
        with self._cond:
            self._reserved += count

    def arrive(self, reserved: int, items: list[T]) -> list[T]:
        """Items for which ``reserved`` places were held have arrived (fewer, if some fell
        away): release the reservation and take them, in one step. Returns those to start."""
        with self._cond:
            self._reserved -= reserved
            start = self._offer_locked(items)
            self._cond.notify_all()
        return start

    def wait_room(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for room; return how much there is. While slots are
        busy and runs are buffered, waits for a batch worth of room rather than any."""
        with self._cond:
            if self.room() <= 0 or (self._buffer and self.room() < self._wake_at):
                self._cond.wait(timeout)
            return max(self.room(), 0)

    def offer(self, items: list[T]) -> list[T]:
        """Take ``items`` in order: those that get a slot are returned (start them), the rest
        wait in the buffer."""
        with self._cond:
            return self._offer_locked(items)

    def _offer_locked(self, items: list[T]) -> list[T]:
        start: list[T] = []
        for item in items:
            if self._busy < self.capacity:
                self._busy += 1
                start.append(item)
            else:
                self._buffer.append(item)
        return start

    def done(self) -> T | None:
        """A slot's item ended: return the next buffered item to start in that slot, or free
        the slot and return None."""
        with self._cond:
            if self._buffer:
                following = self._buffer.popleft()
                if len(self._buffer) == self.prefetch // 2:
                    self._cond.notify_all()  # the buffer runs low: time to fetch more
                return following
            self._busy -= 1
            if self.room() >= self._wake_at or self._busy == 0:
                self._cond.notify_all()
            return None

    def take_buffer(self) -> list[T]:
        """Remove and return every buffered item (at shutdown)."""
        with self._cond:
            items = list(self._buffer)
            self._buffer.clear()
            self._cond.notify_all()
            return items

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every slot to be free; True if they are."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def wake(self) -> None:
        """Wake anyone waiting (at shutdown)."""
        with self._cond:
            self._cond.notify_all()
