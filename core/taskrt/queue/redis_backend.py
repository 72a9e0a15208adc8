"""The Redis queue backend: lists and zsets per queue, moved only by the Lua scripts beside it.

Redis is a rebuildable index (docs/concepts/backends.md): every run it holds is known to the
store, and whatever Redis loses, the outbox relay and the reconciler put back from the store.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.client import Pipeline

from taskrt import logs, metrics
from taskrt.exceptions import BackendUnavailableError
from taskrt.ids import parse_uuid, uuid7
from taskrt.queue.keyspace import Keyspace, QueueKeys
from taskrt.queue.redis_recovery import IndexGuard
from taskrt.queue.scripts import Scripts
from taskrt.records import (
    ClaimedRun,
    DispatchEntry,
    FinishReport,
    MaintenanceReport,
    QueueCounts,
    RenewReport,
    RunFinish,
    RunState,
    WorkerIdentity,
)
from taskrt.settings import Settings
from taskrt.store import Store

log = logging.getLogger("taskrt.queue.redis")
# entries anyone with access to Redis can push: at most one line a minute per queue and kind
_dropped_log = logs.RateLimitedLog(60.0)

SettleOp = tuple[str | bytes, ...]
"""One group of settle.lua's arguments: op, run id, lease value, extra 1, extra 2."""

CHUNK = 500  # runs per script call: keeps Lua's unpack() and each call short
PROMOTE_PER_FETCH = 200
MAX_DELAY_S = 10.0**11  # about 3,000 years: far beyond any due time, well inside a score
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Leased:
    """Runs leased in Redis and not claimed yet: (queue, raw entry) in fetch order."""

    token: str
    entries: list[tuple[str, bytes]]

    def __len__(self) -> int:
        return len(self.entries)


def lease_value(worker_id: uuid.UUID, lease_token: str) -> str:
    """The value a lease holds in ``queue:{q}:leases``."""
    return f"{worker_id}:{lease_token}"


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def delay_ms(seconds: float) -> int:
    """A delay in whole milliseconds, rounded up and bounded (a score Redis can hold)."""
    if not seconds > 0:  # also NaN
        return 0
    return math.ceil(min(seconds, MAX_DELAY_S) * 1000)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisQueueBackend:
    """Queues in Redis, the record in the store."""

    name = "redis"
    needs_outbox = True

    def __init__(self, store: Store, client: redis.Redis, settings: Settings) -> None:
        self.store = store
        self.redis = client
        self.settings = settings
        self.keys = Keyspace(settings.redis_prefix)
        self.scripts = Scripts(client)
        self.instance = uuid7().hex
        self._pubsub: Any = None
        self._subscribed: set[str] = set()
        self._pubsub_lock = threading.Lock()
        self._next_due_ms: int | None = None
        self._registered: set[str] = set()
        self.guard = IndexGuard(self)

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
        """Place committed queued runs in their queues (one script call per queue and chunk)."""
        if not entries:
            return
        by_queue: dict[str, list[DispatchEntry]] = defaultdict(list)
        for entry in entries:
            by_queue[entry.queue].append(entry)

        new_queues = [q for q in by_queue if q not in self._registered]
        left = self._left_ms(entries)

        def build(pipe: Pipeline) -> None:
            if new_queues:  # once per queue and process; the reconciler re-adds lost names
                pipe.sadd(self.keys.queues, *new_queues)
            for queue, items in by_queue.items():
                k = self.keys.queue(queue)
                for chunk in _chunks(items):
                    args: list[Any] = [k.wake]
                    for e in chunk:
                        args.extend((str(e.run_id), left.get(e.run_id, 0)))
                    self.scripts.dispatch(
                        keys=[k.ready, k.delayed, k.inflight], args=args, client=pipe
                    )

        self.scripts.run_pipeline(build)
        self._registered.update(new_queues)

    def _left_ms(self, entries: Sequence[DispatchEntry]) -> dict[uuid.UUID, int]:
        """Milliseconds each delayed entry has left by the database clock (read once, only
        if some entry has a due time). Redis scores them from its own TIME plus that, so the
        two servers' clocks never meet in one comparison."""
        delayed = [e for e in entries if e.due_ms is not None]
        if not delayed:
            return {}
        now = self.store.clock()
        now_ms = (now - _EPOCH) // timedelta(milliseconds=1)
        return {e.run_id: int(e.due_ms or 0) - now_ms for e in delayed}

    def withdraw(self, entries: Sequence[DispatchEntry]) -> None:
        """Remove cancelled runs from their queues."""
        for entry in entries:
            k = self.keys.queue(entry.queue)
            self.scripts.withdraw(keys=[k.ready, k.delayed], args=[str(entry.run_id)])

    def dead_lettered(self, queue: str, task_ids: Sequence[uuid.UUID]) -> None:
        """Append tasks to the dead-letter list of ``queue``."""
        if task_ids:
            self.redis.rpush(self.keys.queue(queue).dlq, *(str(t) for t in task_ids))

    def replayed(
        self, queue: str, task_ids: Sequence[uuid.UUID], entries: Sequence[DispatchEntry]
    ) -> None:
        """Take replayed tasks out of the dead-letter list and make their new runs ready."""
        k = self.keys.queue(queue)
        pairs = list(zip(task_ids, entries, strict=True))
        for chunk in _chunks(pairs):
            args: list[Any] = [k.wake]
            for task_id, entry in chunk:
                args.extend((str(task_id), str(entry.run_id)))
            self.scripts.replay(keys=[k.dlq, k.ready], args=args)
        self.redis.sadd(self.keys.queues, queue)

    # --- workers --------------------------------------------------------------------------
    def acquire(
        self, queues: Sequence[str], limit: int, worker: WorkerIdentity
    ) -> list[ClaimedRun]:
        """Lease up to ``limit`` runs from ``queues`` in order, then claim them in the store."""
        return self.claim(self.lease(queues, limit, worker), worker)

    def lease(self, queues: Sequence[str], limit: int, worker: WorkerIdentity) -> Leased:
        """Stage one of :meth:`acquire`: lease up to ``limit`` runs in Redis, trying
        ``queues`` in order (one script call per queue until enough are leased). Fast, and
        done in priority order; the slower claim may then run beside the next lease."""
        token = secrets.token_hex(8)
        value = lease_value(worker.id, token)
        ttl_ms = int(worker.lease_ttl * 1000)
        fetched: list[tuple[str, bytes]] = []
        next_due: int | None = None
        want = limit
        for queue in queues:
            k = self.keys.queue(queue)
            reply = self.scripts.fetch(
                keys=[k.ready, k.delayed, k.inflight, k.leases, k.paused],
                args=[want, ttl_ms, value, PROMOTE_PER_FETCH],
            )
            wait = int(reply[0])
            if wait >= 0:
                next_due = wait if next_due is None else min(next_due, wait)
            fetched.extend((queue, raw) for raw in reply[1:])
            want = limit - len(fetched)
            if want <= 0:
                break
        self._next_due_ms = next_due
        return Leased(token=token, entries=fetched)

    def claim(self, leased: Leased, worker: WorkerIdentity) -> list[ClaimedRun]:
        """Stage two of :meth:`acquire`: claim leased runs in the store (fenced on status
        ``queued``); release, in Redis, what is garbage or no longer queued."""
        if not leased.entries:
            return []
        value = lease_value(worker.id, leased.token)
        valid: list[uuid.UUID] = []
        queue_of: dict[uuid.UUID, str] = {}
        drop: list[tuple[str, str | bytes]] = []  # raw bytes: garbage must match exactly
        for queue, raw in leased.entries:
            run_id = parse_uuid(_text(raw))
            if run_id is None:
                _dropped_log.log(
                    log,
                    logging.WARNING,
                    (queue, "garbage"),
                    "dropped an entry of queue %r that is not a run id: %r",
                    queue,
                    raw[:80],
                )
                drop.append((queue, raw))
            else:
                valid.append(run_id)
                queue_of[run_id] = queue
        try:
            claimed = self.store.claim_runs(
                valid, worker_id=worker.id, lease_token=leased.token, lease_ttl=worker.lease_ttl
            )
        except Exception:
            # the store recorded no claim (it is away): give the runs back at once rather
            # than leave them in flight until their leases expire
            self.unlease(leased, worker)
            raise
        claimed_ids = {c.run_id for c in claimed}
        refused = [run_id for run_id in valid if run_id not in claimed_ids]
        early = self.store.not_due(refused) if refused else {}
        if early:
            # Redis let them out before their time by the database clock (the clocks
            # disagree): back to delayed for the time left, no attempt spent
            log.info(
                "%d run(s) fetched before their due time by the database clock; put back "
                "until then (are the Redis and database clocks apart?)",
                len(early),
            )
            later: dict[str, list[SettleOp]] = defaultdict(list)
            for run_id, left in early.items():
                later[queue_of[run_id]].append(("L", str(run_id), value, "", str(left)))
            for queue, items in later.items():
                metrics.runs_not_due(queue, len(items))
            self._settle(later)
        for run_id in refused:
            if run_id not in early:  # cancelled, duplicate, unknown or already finished
                _dropped_log.log(
                    log,
                    logging.WARNING,
                    (queue_of[run_id], "unknown"),
                    "dropped run %s of queue %r: the store holds no queued run with that id "
                    "(unknown, cancelled, finished or a duplicate entry)",
                    run_id,
                    queue_of[run_id],
                )
                drop.append((queue_of[run_id], str(run_id)))
        if drop:
            ops: dict[str, list[SettleOp]] = defaultdict(list)
            for queue, raw_id in drop:
                ops[queue].append(("X", raw_id, value, "", ""))
            self._settle(ops)
        return claimed

    def unlease(self, leased: Leased, worker: WorkerIdentity) -> int:
        """Put leased runs that were never claimed back at the head of their queues, in their
        fetch order, if their leases are still this worker's (Redis only: the store holds them
        ``queued`` already). Nothing is spent. Returns how many went back; if Redis is away
        too, the leases expire and the reaper puts the runs back instead."""
        value = lease_value(worker.id, leased.token)
        ops: dict[str, list[SettleOp]] = defaultdict(list)
        for queue, raw in reversed(leased.entries):  # each goes to the head: last one first
            ops[queue].append(("U", raw, value, "", ""))
        try:
            return self._settle(ops)
        except redis.RedisError as exc:
            log.warning("could not put %d leased run(s) back (%s)", len(leased), exc)
            return 0

    def _ensure_pubsub(self, queues: Sequence[str]) -> Any:
        with self._pubsub_lock:
            if self._pubsub is None:
                self._pubsub = self.redis.pubsub(  # type: ignore[no-untyped-call]
                    ignore_subscribe_messages=True
                )
                self._pubsub.subscribe(self.keys.control_channel(self.instance))
            wanted = {self.keys.queue(q).wake for q in queues} - self._subscribed
            if wanted:
                self._pubsub.subscribe(*wanted)
                self._subscribed |= wanted
            return self._pubsub

    def prepare_wait(self, queues: Sequence[str]) -> None:
        """Subscribe to the wake channels of ``queues`` (call before the first fetch, so no
        wake-up published between a fetch and a wait can be missed)."""
        self._ensure_pubsub(queues)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Block until a wake message arrives for ``queues``, a delayed run falls due, or
        ``timeout`` seconds pass."""
        pubsub = self._ensure_pubsub(queues)
        if self._next_due_ms is not None:
            timeout = min(timeout, self._next_due_ms / 1000 + 0.001)
        try:
            message = pubsub.get_message(timeout=max(timeout, 0.0))
            while message is not None:  # drain what else arrived: the next fetch covers it
                message = pubsub.get_message(timeout=0)
        except redis.RedisError as exc:
            log.warning("wake-up subscription failed (%s); reconnecting", exc)
            self._reset_pubsub()

    def _reset_pubsub(self) -> None:
        with self._pubsub_lock:
            if self._pubsub is not None:
                with contextlib.suppress(redis.RedisError):
                    self._pubsub.close()
            self._pubsub = None
            self._subscribed = set()

    def interrupt_wait(self) -> None:
        """Wake this process's fetcher if it is waiting."""
        try:
            self.redis.publish(self.keys.control_channel(self.instance), "stop")
        except redis.RedisError:
            log.debug("could not publish the stop wake-up", exc_info=True)

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
            by_queue[run.queue].append(run)
        ttl_ms = int(worker.lease_ttl * 1000)
        taken_over: list[uuid.UUID] = []

        def build(pipe: Pipeline) -> None:
            for queue, items in by_queue.items():
                k = self.keys.queue(queue)
                for chunk in _chunks(items):
                    args: list[Any] = [ttl_ms]
                    for run in chunk:
                        args.extend((str(run.run_id), lease_value(worker.id, run.lease_token)))
                    self.scripts.renew(keys=[k.inflight, k.leases], args=args, client=pipe)

        if not by_queue:
            return taken_over
        for taken in self.scripts.run_pipeline(build):
            for raw in taken or ():
                run_id = parse_uuid(_text(raw))
                if run_id is not None:
                    taken_over.append(run_id)
        return taken_over

    def finish(self, finishes: Sequence[RunFinish], worker: WorkerIdentity) -> FinishReport:
        """Write outcomes to the store (fenced), then settle the runs in Redis."""
        report = self.store.finish_runs(finishes, with_outbox=True)
        ops: dict[str, list[SettleOp]] = defaultdict(list)
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
                ops[f.run.queue].append(("R", rid, value, str(f.next_run_id), str(left)))
            elif f.dead_letters:
                ops[f.run.queue].append(("D", rid, value, str(f.run.task_id), ""))
            else:
                ops[f.run.queue].append(("A", rid, value, "", ""))
        unclaimed = {f.run.run_id for f in report.unclaimed}
        for f in report.fenced:
            # a claim a database crash undid: the run is queued in the store, so it goes back
            # to the head of its queue ("U", if the lease is still ours) instead of nowhere
            op = "U" if f.run.run_id in unclaimed else "X"
            ops[f.run.queue].append(
                (op, str(f.run.run_id), lease_value(worker.id, f.run.lease_token), "", "")
            )
        self._settle(ops)
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
        handed = self.store.hand_back_runs(runs)
        handed_ids = {r.run_id for r in handed}
        ops: dict[str, list[SettleOp]] = defaultdict(list)
        for run in runs:
            op = "Q" if run.run_id in handed_ids else "X"
            ops[run.queue].append(
                (op, str(run.run_id), lease_value(worker.id, run.lease_token), "", "")
            )
        self._settle(ops)
        return len(handed)

    def _hand_back_later(
        self, runs: Sequence[ClaimedRun], worker: WorkerIdentity, delay: float
    ) -> int:
        handed = {r.run_id for r in self.store.hand_back_runs(runs, delay)}
        left_ms = str(max(math.ceil(delay * 1000), 1))  # the same delay the store applied
        ops: dict[str, list[SettleOp]] = defaultdict(list)
        for run in runs:
            value = lease_value(worker.id, run.lease_token)
            # "L": back to the delayed set for that long, if the lease is still ours
            op = "L" if run.run_id in handed else "X"
            ops[run.queue].append((op, str(run.run_id), value, "", left_ms))
        self._settle(ops)
        return len(handed)

    def _settle(self, ops: dict[str, list[SettleOp]]) -> int:
        """Run the settle ops; returns how many the scripts applied."""
        if not ops:
            return 0

        def build(pipe: Pipeline) -> None:
            for queue, groups in ops.items():
                k = self.keys.queue(queue)
                for chunk in _chunks(groups):
                    args: list[Any] = [k.wake]
                    for group in chunk:
                        args.extend(group)
                    self.scripts.settle(
                        keys=[k.inflight, k.leases, k.ready, k.delayed, k.dlq],
                        args=args,
                        client=pipe,
                    )

        return sum(int(applied or 0) for applied in self.scripts.run_pipeline(build))

    # --- operators ------------------------------------------------------------------------
    def pause(self, queue: str) -> None:
        """Mark ``queue`` paused in Redis (the store's record is written by the service)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.queue(queue).paused, "1")
        pipe.sadd(self.keys.queues, queue)
        pipe.execute()

    def resume(self, queue: str) -> None:
        """Clear the pause and wake idle workers of ``queue``."""
        k = self.keys.queue(queue)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(k.paused)
        pipe.publish(k.wake, "w")
        pipe.execute()

    def forget_registered_queues(self) -> None:
        """Register queue names again on their next dispatch (Redis lost its registry)."""
        self._registered = set()

    def known_queues(self) -> list[str]:
        """Queue names in the Redis registry."""
        return sorted(_text(name) for name in self.redis.smembers(self.keys.queues))

    def counts(self, queues: Sequence[str] | None = None) -> list[QueueCounts]:
        """Ready, delayed, in-flight and dead-letter sizes and the paused flag, per queue."""
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
            counts.append(
                QueueCounts(name, int(ready), int(delayed), int(inflight), int(dlq), bool(paused))
            )
        return counts

    # --- maintenance ----------------------------------------------------------------------
    def maintain(self, *, reconcile: bool = False) -> MaintenanceReport:
        """One maintenance pass; safe to run in every process at once."""
        report = MaintenanceReport()
        if self.guard.check(report):
            reconcile = False  # the rebuild was a full reconcile, and more
        queues = self.known_queues()
        for queue in queues:
            k = self.keys.queue(queue)
            report.promoted += int(
                self.scripts.promote(keys=[k.delayed, k.ready], args=[1000, k.wake])
            )
            self._reap(queue, k, report)
        report.relayed = self.store.relay_outbox(self.dispatch, grace=self.settings.outbox_grace)
        report.workers_offline = self.store.mark_silent_workers_offline(
            self.settings.worker_offline_after
        )
        if reconcile and self._take_lock("reconcile", self.settings.reconcile_interval):
            from taskrt.queue.redis_reconcile import reconcile_all

            reconcile_all(self, report)
        return report

    def _take_lock(self, name: str, ttl: float) -> bool:
        return bool(
            self.redis.set(self.keys.lock(name), self.instance, nx=True, px=int(ttl * 1000))
        )

    def _reap(self, queue: str, k: QueueKeys, report: MaintenanceReport) -> None:
        flat = self.scripts.expired(keys=[k.inflight, k.leases], args=[500])
        if not flat:
            return
        # keep the raw bytes: a garbage member must be released by exactly its own value
        expired = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        ids = {raw: parse_uuid(_text(raw)) for raw, _ in expired}
        states = self.store.run_states([rid for rid in ids.values() if rid is not None])
        ops: dict[str, list[SettleOp]] = defaultdict(list)
        unstarted: dict[str, list[SettleOp]] = defaultdict(list)
        lost_candidates: list[RunState] = []
        value_of: dict[uuid.UUID, bytes] = {}
        for raw, value in expired:
            run_id = ids[raw]
            state = states.get(run_id) if run_id is not None else None
            if state is None or state.status not in ("queued", "running"):
                ops[queue].append(("X", raw, value, "", ""))
                report.dropped += 1
            elif state.status == "queued":
                unstarted[queue].append(("U", raw, value, "", ""))
            elif state.lease_expired:
                lost_candidates.append(state)
                value_of[state.run_id] = value
        # every worker's pass sees the same expired entries: count only those this pass moved
        report.requeued_unstarted += self._settle(unstarted)
        if lost_candidates:
            lost = self.store.mark_lost(
                lost_candidates, poison_budget=self.settings.poison_budget, with_outbox=True
            )
            left = self._left_ms([item.next_run for item in lost if item.next_run is not None])
            for item in lost:
                value = value_of[item.run_id]
                if item.next_run is not None:
                    ops[item.queue].append(
                        (
                            "R",
                            str(item.run_id),
                            value,
                            str(item.next_run.run_id),
                            str(left.get(item.next_run.run_id, 0)),
                        )
                    )
                elif item.outcome == "dead_letter":
                    ops[item.queue].append(("D", str(item.run_id), value, str(item.task_id), ""))
                else:
                    ops[item.queue].append(("A", str(item.run_id), value, "", ""))
            report.reaped_lost += len(lost)
            report.lost.extend(lost)
            self._settle(ops)
            retried = [item.next_run.run_id for item in lost if item.next_run is not None]
            self.store.delete_outbox(retried)
            return
        self._settle(ops)

    def close(self) -> None:
        """Close the wake-up subscription and the connection pool."""
        self._reset_pubsub()
        self.redis.close()
