"""Claiming beside leasing: the fetcher leases the next batch while earlier batches are still
being claimed in the database, and claimed batches are released strictly in lease order.

Leasing (one Redis script call per queue) is fast and happens in priority order in the fetcher
thread; claiming (a database round trip) is the slow part. Running up to ``MAX_IN_FLIGHT``
claims at once keeps slots busy, and releasing them in the order their leases were taken keeps
the priority order: a batch leased later never starts before one leased earlier.

While claims fail (the store is away), the fetcher backs off (:class:`Backoff`) rather than
leasing runs it cannot claim; the backend has already put a failed claim's runs back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_IN_FLIGHT = 2


class ClaimSequencer:
    """Tickets for claims in flight; releases finished claims in ticket order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._next_release = 0
        self._done: dict[int, Callable[[], None]] = {}

    @property
    def in_flight(self) -> int:
        """Claims taken and not released yet."""
        return self._next_ticket - self._next_release

    def ticket(self) -> int:
        """A ticket for a claim about to start (call in lease order)."""
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            return ticket

    def complete(self, ticket: int, release: Callable[[], None]) -> None:
        """The claim ``ticket`` finished; run ``release`` once every earlier ticket's did.

        Releases run under the sequencer's lock, so two claim threads can never release out
        of order; a release must therefore be quick and must not block.
        """
        with self._cond:
            self._done[ticket] = release
            while self._next_release in self._done:
                self._done.pop(self._next_release)()
                self._next_release += 1
            self._cond.notify_all()

    def wait_below(self, limit: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until fewer than ``limit`` claims are in flight."""
        with self._cond:
            return self._cond.wait_for(lambda: self.in_flight < limit, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no claim is in flight."""
        return self.wait_below(1, timeout)


BACKOFF_FIRST = 0.05
BACKOFF_MOST = 1.0
"""The longest pause between fetches while fetching or claiming fails: short enough that work
flows again within about a second of the store (or Redis) answering again."""


class Backoff:
    """How long the fetcher pauses while fetches or claims fail: doubling from
    ``BACKOFF_FIRST`` up to ``BACKOFF_MOST``, back to nothing after a success. Claims fail on
    claimer threads; the fetcher waits before its next lease (thread-safe)."""

    def __init__(self, first: float = BACKOFF_FIRST, most: float = BACKOFF_MOST) -> None:
        self.first = first
        self.most = most
        self._lock = threading.Lock()
        self._next = first
        self._resume_at = 0.0
        self.failing = False
        """True from a failure until the next success."""

    def failed(self) -> float:
        """Record a failure; returns the pause (seconds) before the next attempt."""
        with self._lock:
            pause = self._next
            self._next = min(pause * 2, self.most)
            self._resume_at = max(self._resume_at, time.monotonic() + pause)
            self.failing = True
            return pause

    def succeeded(self) -> bool:
        """Record a success; returns True if it ends a run of failures."""
        with self._lock:
            ended = self.failing
            self._next = self.first
            self._resume_at = 0.0
            self.failing = False
            return ended

    def wait(self, stopping: threading.Event) -> None:
        """Pause until the next attempt is due (or ``stopping`` is set)."""
        left = self._resume_at - time.monotonic()
        if left > 0:
            stopping.wait(left)
