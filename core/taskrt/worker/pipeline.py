"""Claiming beside leasing: the fetcher leases the next batch while earlier batches are still
being claimed in the database, and claimed batches are released strictly in lease order.

Leasing (one Redis script call per queue) is fast and happens in priority order in the fetcher
thread; claiming (a database round trip) is the slow part. Running up to ``MAX_IN_FLIGHT``
claims at once keeps slots busy, and releasing them in the order their leases were taken keeps
the priority order: a batch leased later never starts before one leased earlier.
"""

from __future__ import annotations

import threading
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
