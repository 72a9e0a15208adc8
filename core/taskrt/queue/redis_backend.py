"""The Redis queue backend: lists and zsets per queue, moved only by the Lua scripts beside it.

Redis is a rebuildable index (docs/concepts/backends.md): every run it holds is known to the
store, and whatever Redis loses, the outbox relay and the reconciler put back from the store.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis
from redis.client import Pipeline

from taskrt.exceptions import BackendUnavailableError, ConfigurationError
from taskrt.ids import parse_uuid
from taskrt.queue.base import FetchPlan, Leased
from taskrt.queue.redis_fetch import RedisFetcher
from taskrt.queue.redis_index import (
    RedisIndex,
    Settle,
    SettleAction,
    chunks,
    delay_ms,
    lease_value,
    settlements,
    text,
)
from taskrt.queue.redis_outbox import OutboxCleaner
from taskrt.queue.redis_reaper import reap
from taskrt.queue.redis_reconcile import reconcile_all
from taskrt.queue.redis_recovery import IndexGuard
from taskrt.records import (
    ClaimedRun,
    DispatchEntry,
    FinishReport,
    MaintenanceReport,
    QueueCounts,
    RenewReport,
    RunFinish,
    WorkerIdentity,
    split_address,
)
from taskrt.settings import Settings
from taskrt.store import Store

__all__ = ["Leased", "RedisQueueBackend", "delay_ms", "lease_value"]

log = logging.getLogger("taskrt.queue.redis")

PROMOTE_PER_PASS = 1000
"""Due runs one maintenance pass moves from delayed to ready, per queue."""


class RedisQueueBackend:
    """Queues in Redis, the record in the store.

    The parts: :class:`RedisIndex` (client, keys, scripts; placing and settling runs),
    :class:`RedisFetcher` (lease, claim, wake-ups), the reaper, the reconciler and the
    recovery guard. The outbox is this backend's own concern: the store writes an outbox row
    with every queued run (it is built with ``outbox=True``), and this backend retires the
    rows once the runs are placed, off the caller's path (:class:`OutboxCleaner`).
    """

    name = "redis"
    keeps_index = True

    def __init__(self, store: Store, client: redis.Redis, settings: Settings) -> None:
        if not store.outbox:
            # without outbox rows a producer that dies between its commit and its dispatch
            # leaves a run no relay would ever send
            raise ConfigurationError(
                "the Redis queue backend needs a store that writes outbox rows: build it with "
                "Store(engine, outbox=True) (taskrt.backends.open_store does)"
            )
        self.store = store
        self.redis = client
        self.settings = settings
        self.index = RedisIndex(store, client, settings)
        self.keys = self.index.keys
        self.scripts = self.index.scripts
        self.fetcher = RedisFetcher(self.index)
        self.guard = IndexGuard(self.index)
        self.outbox = OutboxCleaner(store)

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> RedisQueueBackend:
        """Connect (lazily) to the Redis server the settings name."""
        assert settings.redis_url is not None
        client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
        return cls(store, client, settings)

    def ping(self) -> None:
        """Raise BackendUnavailableError unless Redis answers."""
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise BackendUnavailableError(f"Redis error: {exc}") from exc

    # --- producers ------------------------------------------------------------------------
    def dispatch(self, entries: Sequence[DispatchEntry]) -> None:
        """Place committed queued runs in their queues (one script call per queue and chunk),
        then have their outbox rows deleted in the background: the relay need not send them.
        Raises if Redis fails; the rows stay, and the relay sends the runs later."""
        if not entries:
            return
        self.index.place(entries)
        self.outbox.add([e.run_id for e in entries])

    def withdraw(self, entries: Sequence[DispatchEntry]) -> None:
        """Remove cancelled runs from their queues."""
        for entry in entries:
            k = self.keys.queue(entry.address)
            self.scripts.withdraw(keys=[k.ready, k.delayed], args=[str(entry.run_id)])

    def replayed(
        self, queue: str, task_ids: Sequence[uuid.UUID], entries: Sequence[DispatchEntry]
    ) -> None:
        """Take replayed tasks out of the dead-letter list of queue address ``queue`` and make
        their new runs ready (their outbox rows deleted in the background, as after
        :meth:`dispatch`)."""
        k = self.keys.queue(queue)
        pairs = list(zip(task_ids, entries, strict=True))
        for chunk in chunks(pairs):
            args: list[Any] = [k.wake]
            for task_id, entry in chunk:
                args.extend((str(task_id), str(entry.run_id)))
            self.scripts.replay(keys=[k.dlq, k.ready], args=args)
        self.redis.sadd(self.keys.queues, queue)
        self.outbox.add([e.run_id for e in entries])

    # --- workers --------------------------------------------------------------------------
    def acquire(
        self, plan: Sequence[str] | FetchPlan, limit: int, worker: WorkerIdentity
    ) -> list[ClaimedRun]:
        """Lease up to ``limit`` runs following ``plan``, then claim them in the store."""
        return self.fetcher.claim(self.fetcher.lease(plan, limit, worker), worker)

    def lease(self, plan: Sequence[str] | FetchPlan, limit: int, worker: WorkerIdentity) -> Leased:
        """Stage one of :meth:`acquire`: lease up to ``limit`` runs in Redis, following
        ``plan`` (see :meth:`RedisFetcher.lease`)."""
        return self.fetcher.lease(plan, limit, worker)

    def claim(self, leased: Leased, worker: WorkerIdentity) -> list[ClaimedRun]:
        """Stage two of :meth:`acquire`: claim leased runs in the store; release, in Redis,
        what is garbage or no longer queued."""
        return self.fetcher.claim(leased, worker)

    def unlease(self, leased: Leased, worker: WorkerIdentity) -> int:
        """Put leased, never-claimed runs back at the head of their queues (Redis only)."""
        return self.fetcher.unlease(leased, worker)

    def prepare_wait(self, queues: Sequence[str], *, all_tenants: bool = False) -> None:
        """Subscribe to the wake channels of ``queues`` before the first fetch (``all_tenants``:
        PSUBSCRIBE to every queue's wake channel)."""
        self.fetcher.prepare_wait(queues, all_tenants=all_tenants)

    def wait_for_work(
        self, queues: Sequence[str], timeout: float, *, all_tenants: bool = False
    ) -> frozenset[str]:
        """Block until a wake message arrives for ``queues``, a delayed run falls due, or
        ``timeout`` seconds pass; returns the addresses the wake messages named."""
        return self.fetcher.wait_for_work(queues, timeout, all_tenants=all_tenants)

    def interrupt_wait(self) -> None:
        """Wake this process's fetcher if it is waiting."""
        self.fetcher.interrupt_wait()

    def renew(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> RenewReport:
        """Renew in the store first (the truth), then in Redis for the runs still ours."""
        report = RenewReport()
        if not runs:
            return report
        ours, cancel = self.store.renew_leases(
            [r.run_id for r in runs], worker_id=worker.id, lease_ttl=worker.lease_ttl
        )
        report.cancel_requested = sorted(cancel)
        report.lost = [r.run_id for r in runs if r.run_id not in ours]
        for run_id in self.renew_index([r for r in runs if r.run_id in ours], worker):
            if run_id not in report.lost:
                report.lost.append(run_id)
        return report

    def renew_index(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> list[uuid.UUID]:
        """The Redis half of :meth:`renew`, for a worker that renews in the store on its own
        schedule (so a slow Redis never delays the store's leases): extend the leases of
        ``runs`` (which the store last said are this worker's) in Redis. Returns the runs
        whose Redis lease another worker holds."""
        by_queue: dict[str, list[ClaimedRun]] = defaultdict(list)
        for run in runs:
            by_queue[run.address].append(run)
        ttl_ms = int(worker.lease_ttl * 1000)
        taken_over: list[uuid.UUID] = []

        def build(pipe: Pipeline) -> None:
            for queue, items in by_queue.items():
                k = self.keys.queue(queue)
                for chunk in chunks(items):
                    args: list[Any] = [ttl_ms]
                    for run in chunk:
                        args.extend((str(run.run_id), lease_value(worker.id, run.lease_token)))
                    self.scripts.renew(keys=[k.inflight, k.leases], args=args, client=pipe)

        if not by_queue:
            return taken_over
        for taken in self.scripts.run_pipeline(build):
            for raw in taken or ():
                run_id = parse_uuid(text(raw))
                if run_id is not None:
                    taken_over.append(run_id)
        return taken_over

    def finish(self, finishes: Sequence[RunFinish], worker: WorkerIdentity) -> FinishReport:
        """Write outcomes to the store (fenced), then settle the runs in Redis."""
        report = self.store.finish_runs(finishes)
        ops = settlements()
        retry_due = {e.run_id: e for e in report.retries}
        for f in report.won:
            value = lease_value(worker.id, f.run.lease_token)
            rid = str(f.run.run_id)
            if f.status == "failed" and f.retry_delay is not None:
                assert f.next_run_id is not None
                entry = retry_due[f.next_run_id]
                # the delay the store added to its own clock, counted from Redis's TIME now
                # (after the store's commit): the retry can only fall due late, never early
                left = delay_ms(f.retry_delay) if entry.due_ms is not None else 0
                ops[f.run.address].append(
                    Settle(SettleAction.RETRY, rid, value, str(f.next_run_id), left)
                )
            elif f.dead_letters:
                ops[f.run.address].append(
                    Settle(SettleAction.DEAD_LETTER, rid, value, str(f.run.task_id))
                )
            else:
                ops[f.run.address].append(Settle(SettleAction.ACK, rid, value))
        unclaimed = {f.run.run_id for f in report.unclaimed}
        for f in report.fenced:
            # a claim a database crash undid: the run is queued in the store, so it goes back
            # to the head of its queue (if the lease is still ours) instead of nowhere
            action = SettleAction.UNSTARTED if f.run.run_id in unclaimed else SettleAction.DROP
            ops[f.run.address].append(
                Settle(action, str(f.run.run_id), lease_value(worker.id, f.run.lease_token))
            )
        self.index.settle(ops)
        if report.retries:
            self.store.delete_outbox([e.run_id for e in report.retries])
        return report

    def hand_back(
        self, runs: Sequence[ClaimedRun], worker: WorkerIdentity, *, delay: float = 0.0
    ) -> int:
        """Return unfinished runs to the head of their queues without spending an attempt;
        with ``delay``, to their delayed sets, due by the store's clock."""
        if delay > 0:
            return self._hand_back_later(runs, worker, delay)
        handed = {r.run_id for r in self.store.hand_back_runs(runs)}
        ops = settlements()
        for run in runs:
            action = SettleAction.HAND_BACK if run.run_id in handed else SettleAction.DROP
            ops[run.address].append(
                Settle(action, str(run.run_id), lease_value(worker.id, run.lease_token))
            )
        self.index.settle(ops)
        return len(handed)

    def _hand_back_later(
        self, runs: Sequence[ClaimedRun], worker: WorkerIdentity, delay: float
    ) -> int:
        handed = {r.run_id for r in self.store.hand_back_runs(runs, delay)}
        left_ms = max(math.ceil(delay * 1000), 1)  # the same delay the store applied
        ops = settlements()
        for run in runs:
            value = lease_value(worker.id, run.lease_token)
            # back to the delayed set for that long, if the lease is still ours
            action = SettleAction.LATER if run.run_id in handed else SettleAction.DROP
            ops[run.address].append(Settle(action, str(run.run_id), value, delay_ms=left_ms))
        self.index.settle(ops)
        return len(handed)

    # --- operators ------------------------------------------------------------------------
    def pause(self, queue: str) -> None:
        """Mark queue address ``queue`` paused in Redis (the store's record is written by the
        service)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.queue(queue).paused, "1")
        pipe.sadd(self.keys.queues, queue)
        pipe.execute()

    def resume(self, queue: str) -> None:
        """Clear the pause and wake idle workers of ``queue``."""
        self.index.wake(queue)

    def known_queues(self) -> list[str]:
        """Queue addresses in the Redis registry."""
        return self.index.known_queues()

    def counts(self, queues: Sequence[str] | None = None) -> list[QueueCounts]:
        """Ready, delayed, in-flight and dead-letter sizes and the paused flag, per queue
        address (each :class:`QueueCounts` names its queue and tenant apart)."""
        names = list(queues) if queues is not None else self.known_queues()
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            k = self.keys.queue(name)
            pipe.llen(k.ready)
            pipe.zcard(k.delayed)
            pipe.zcard(k.inflight)
            pipe.llen(k.dlq)
            pipe.exists(k.paused)
        values = pipe.execute()
        counts = []
        for i, name in enumerate(names):
            ready, delayed, inflight, dlq, paused = values[i * 5 : i * 5 + 5]
            tenant, queue = split_address(name)
            counts.append(
                QueueCounts(
                    queue,
                    int(ready),
                    int(delayed),
                    int(inflight),
                    int(dlq),
                    bool(paused),
                    tenant=tenant,
                )
            )
        return counts

    # --- maintenance ----------------------------------------------------------------------
    def maintain(self, *, reconcile: bool = False) -> MaintenanceReport:
        """One maintenance pass; safe to run in every process at once."""
        report = MaintenanceReport()
        if self.guard.check(report):
            reconcile = False  # the rebuild was a full reconcile, and more
        addresses = self.known_queues()
        if addresses:
            # one round trip for every address's promote (each call still one slot)
            def build(pipe: Pipeline) -> None:
                for addr in addresses:
                    k = self.keys.queue(addr)
                    self.scripts.promote(
                        keys=[k.delayed, k.ready], args=[PROMOTE_PER_PASS, k.wake], client=pipe
                    )

            report.promoted += sum(int(n or 0) for n in self.scripts.run_pipeline(build))
        for addr in addresses:
            reap(self.index, addr, self.keys.queue(addr), report)
        # the relay deletes the rows it sends itself: it places, it does not dispatch
        report.relayed = self.store.relay_outbox(self.index.place, grace=self.settings.outbox_grace)
        report.workers_offline = self.store.mark_silent_workers_offline(
            self.settings.worker_offline_after
        )
        if reconcile and self.index.take_lock("reconcile", self.settings.reconcile_interval):
            reconcile_all(self.index, report)
        return report

    def close(self) -> None:
        """Delete the outbox rows still pending, close the wake-up subscription and the
        connection pool."""
        self.outbox.close()
        self.fetcher.close()
        self.redis.close()
