"""The worker's fetch loop: wait for a free slot, fetch runs in priority order, hand them to the
worker; when nothing is ready, wait for a wake-up.

A backend that keeps its queues in an index beside the store (Redis: ``keeps_index``) fetches
in two stages: the lease (fast, in priority order) runs here, and the claim in the store (a
database round trip) runs on a claimer thread beside the next lease; the claims' results are
delivered in lease order (:class:`~taskrt.worker.pipeline.ClaimSequencer`). Other backends
claim in one call.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence

from taskrt import metrics
from taskrt.queue.base import Leased, QueueBackend
from taskrt.records import ClaimedRun, WorkerIdentity, address
from taskrt.worker.execution import ActiveRun
from taskrt.worker.fairness import TenantRotation
from taskrt.worker.isolation import Isolation
from taskrt.worker.pipeline import MAX_IN_FLIGHT, Backoff, ClaimSequencer
from taskrt.worker.slots import SlotPool
from taskrt.worker.threads import HandlerThreads

log = logging.getLogger("taskrt.worker")

IDLE_WAIT = 5.0
"""Longest wait for a wake-up before fetching again anyway."""


def weighted_order(names: Sequence[str], weights: dict[str, int], rng: random.Random) -> list[str]:
    """A random order in which each queue comes first with probability proportional to its
    weight (so no queue starves)."""
    remaining = list(names)
    order = []
    while remaining:
        pick = rng.choices(remaining, weights=[weights[n] for n in remaining])[0]
        order.append(pick)
        remaining.remove(pick)
    return order


class Fetcher:
    """Runs the fetch loop in the calling thread until ``stopping`` is set.

    The worker supplies what happens to fetched runs: ``admit`` turns claimed runs into active
    ones (dropping what it cannot run), ``take`` receives those of a one-call fetch, ``arrive``
    those of a claim for which ``reserved`` slots were held, and ``advance_isolation`` takes
    the loop's turn while a suspect run executes alone.
    """

    def __init__(
        self,
        *,
        backend: QueueBackend,
        identity: WorkerIdentity,
        queues: list[str],
        weights: dict[str, int] | None,
        batch: int,
        slots: SlotPool[ActiveRun],
        isolation: Isolation,
        claimers: HandlerThreads,
        stopping: threading.Event,
        admit: Callable[[list[ClaimedRun], float], list[ActiveRun]],
        take: Callable[[list[ActiveRun]], None],
        arrive: Callable[[int, list[ActiveRun]], None],
        advance_isolation: Callable[[], None],
        rotation: TenantRotation | None = None,
    ) -> None:
        self.backend = backend
        self.identity = identity
        self.queues = queues
        self.weights = weights
        self.batch = batch
        self.slots = slots
        self.isolation = isolation
        self.claimers = claimers
        self.stopping = stopping
        self._admit = admit
        self._take = take
        self._arrive = arrive
        self._advance_isolation = advance_isolation
        self.two_stage = backend.keeps_index
        self.sequencer = ClaimSequencer()
        """Claims on their way, delivered in lease order."""
        self.backoff = Backoff()  # while fetches or claims fail
        self._rng = random.Random()  # noqa: S311 - queue order, not security
        self.rotation = rotation or TenantRotation(["default"])
        """Which tenants' queues each fetch asks, and how many runs of each (fairness)."""
        self._fair = self.rotation.single is None

    def addresses(self) -> list[str]:
        """The queue addresses this worker serves now (for a ``'*'`` worker, of the tenants
        known at the last refresh)."""
        return [address(t, q) for t in self.rotation.tenants for q in self.queues]

    def _wait(self, timeout: float) -> None:
        woken = self.backend.wait_for_work(
            self.addresses(), timeout, all_tenants=self.rotation.all_tenants
        )
        if woken and self._fair:
            self.rotation.woken(woken)

    def queue_order(self) -> list[str]:
        """The queues in the order to try them this time (weighted: a fresh random order)."""
        if self.weights is None:
            return self.queues
        return weighted_order(self.queues, self.weights, self._rng)

    def run(self) -> None:
        """Fetch until ``stopping`` is set."""
        self.rotation.refresh(force=True)
        self.backend.prepare_wait(self.addresses(), all_tenants=self.rotation.all_tenants)
        two_stage = self.two_stage
        while not self.stopping.is_set():
            if self.isolation.engaged:  # a suspect run executes alone: fetch nothing
                self._advance_isolation()
                continue
            if two_stage and not self.sequencer.wait_below(MAX_IN_FLIGHT, timeout=1.0):
                continue
            room = self.slots.wait_room(timeout=1.0)
            if self.stopping.is_set():
                break
            if room <= 0:
                continue
            # while claims fail (the store is away) lease nothing: they would only fail again
            self.backoff.wait(self.stopping)
            if self.stopping.is_set():
                break
            try:
                got = self._fetch(min(room, self.batch))
            except Exception as exc:  # Redis or the database is away: back off and retry
                pause = self.backoff.failed()
                log.error("fetching failed: %s; retrying in %.2f s", exc, pause)
                continue
            if not two_stage:  # a two-stage fetch succeeds when its claim does
                self._succeeded()
            if not got:
                self._wait(IDLE_WAIT)

    def _succeeded(self) -> None:
        if self.backoff.succeeded():
            log.info("fetching and claiming work again")

    def _fetch(self, limit: int) -> int:
        """Fetch up to ``limit`` runs; returns how many were leased or claimed."""
        leased_at = time.monotonic()  # before the lease: it runs from no earlier than this
        rotation = self.rotation
        if self._fair:
            rotation.refresh()
            if rotation.hinted:  # wake-ups that came while busy clear their hints first
                self._wait(0)
        plan = rotation.plan(self.queue_order(), limit)
        if not self.two_stage:
            runs = self.backend.acquire(plan, limit, self.identity)
            self._take(self._admit(runs, leased_at))
            return len(runs)
        leased = self.backend.lease(plan, limit, self.identity)
        if self._fair and leased.empty:
            rotation.hint_empty(leased.empty)
        if len(leased):
            self.slots.reserve(len(leased))
            self.claimers.run(self._claim, self.sequencer.ticket(), leased, leased_at)
        return len(leased)

    def _claim(self, ticket: int, leased: Leased, leased_at: float) -> None:
        """On a claimer thread: claim what was leased, then deliver it in lease order."""
        try:
            runs = self.backend.claim(leased, self.identity)
        except Exception as exc:  # the backend put the leased runs back in their queues
            pause = self.backoff.failed()
            log.error(
                "claiming %d leased run(s) failed: %s; they went back to their queues, "
                "fetching again in %.2f s",
                len(leased),
                exc,
                pause,
            )
            metrics.claim_failed(leased.tenant_queues())
            runs = []
        else:
            self._succeeded()
        actives = self._admit(runs, leased_at)
        self.sequencer.complete(ticket, lambda: self._arrive(len(leased), actives))
