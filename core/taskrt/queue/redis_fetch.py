"""Fetching from the Redis queues: the two-stage fetch (lease in Redis, claim in the store) and
the wake-up subscription an idle worker waits on."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from taskrt import logs, metrics
from taskrt.ids import parse_uuid
from taskrt.queue.base import FetchPlan, Leased, as_plan
from taskrt.queue.redis_index import (
    PROMOTE_PER_FETCH,
    RedisIndex,
    Settle,
    SettleAction,
    lease_value,
    settlements,
    text,
)
from taskrt.records import ClaimedRun, WorkerIdentity

log = logging.getLogger("taskrt.queue.redis")
# entries anyone with access to Redis can push: at most one line a minute per queue and kind
_dropped_log = logs.RateLimitedLog(60.0)


class RedisFetcher:
    """Leases and claims runs for a worker, and waits for wake-ups when there are none."""

    def __init__(self, index: RedisIndex) -> None:
        self.index = index
        self._pubsub: Any = None
        self._subscribed: set[str] = set()
        self._patterned = False
        self._pubsub_lock = threading.Lock()
        self._next_due_ms: int | None = None

    # --- the two stages -------------------------------------------------------------------
    def lease(self, plan: Sequence[str] | FetchPlan, limit: int, worker: WorkerIdentity) -> Leased:
        """Lease up to ``limit`` runs in Redis, following ``plan`` (one script call per plan
        entry until enough are leased; an address that came back short is not asked again in
        this fetch). Fast, and done in priority order; the slower claim may then run beside
        the next lease. Given plain addresses, each may give up to ``limit``: today's calls."""
        token = secrets.token_hex(8)
        value = lease_value(worker.id, token)
        ttl_ms = int(worker.lease_ttl * 1000)
        fetched: list[tuple[str, bytes]] = []
        next_due: int | None = None
        short: set[str] = set()
        empty: set[str] = set()
        want = limit
        keys, fetch = self.index.keys, self.index.scripts.fetch
        for addr, cap in as_plan(plan, limit):
            if addr in short:
                continue
            ask = min(cap, want)
            if ask <= 0:
                continue
            k = keys.queue(addr)
            reply = fetch(
                keys=[k.ready, k.delayed, k.inflight, k.leases, k.paused],
                args=[ask, ttl_ms, value, PROMOTE_PER_FETCH],
            )
            wait = int(reply[0])
            if wait >= 0:
                next_due = wait if next_due is None else min(next_due, wait)
            got = len(reply) - 1
            if got < ask:
                short.add(addr)
                if got == 0 and wait < 0:  # nothing ready, nothing delayed (or paused)
                    empty.add(addr)
            fetched.extend((addr, raw) for raw in reply[1:])
            want = limit - len(fetched)
            if want <= 0:
                break
        self._next_due_ms = next_due
        return Leased(token=token, entries=fetched, empty=frozenset(empty))

    def claim(self, leased: Leased, worker: WorkerIdentity) -> list[ClaimedRun]:
        """Claim leased runs in the store (fenced on status ``queued``); release, in Redis,
        what is garbage or no longer queued."""
        if not leased.entries:
            return []
        value = lease_value(worker.id, leased.token)
        valid: list[uuid.UUID] = []
        queue_of: dict[uuid.UUID, str] = {}
        drop: list[tuple[str, str | bytes]] = []  # raw bytes: garbage must match exactly
        for queue, raw in leased.entries:
            run_id = parse_uuid(text(raw))
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
        store = self.index.store
        try:
            claimed = store.claim_runs(
                valid, worker_id=worker.id, lease_token=leased.token, lease_ttl=worker.lease_ttl
            )
        except Exception:
            # the store recorded no claim (it is away): give the runs back at once rather
            # than leave them in flight until their leases expire
            self.unlease(leased, worker)
            raise
        claimed_ids = {c.run_id for c in claimed}
        refused = [run_id for run_id in valid if run_id not in claimed_ids]
        early = store.not_due(refused) if refused else {}
        if early:
            self._put_back_early(early, queue_of, value)
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
            ops = settlements()
            for queue, raw_id in drop:
                ops[queue].append(Settle(SettleAction.DROP, raw_id, value))
            self.index.settle(ops)
        return claimed

    def _put_back_early(
        self, early: dict[uuid.UUID, int], queue_of: dict[uuid.UUID, str], value: str
    ) -> None:
        """Redis let these runs out before their time by the database clock (the clocks
        disagree): back to delayed for the time left, no attempt spent."""
        log.info(
            "%d run(s) fetched before their due time by the database clock; put back "
            "until then (are the Redis and database clocks apart?)",
            len(early),
        )
        later = settlements()
        for run_id, left in early.items():
            later[queue_of[run_id]].append(
                Settle(SettleAction.LATER, str(run_id), value, delay_ms=left)
            )
        for addr, items in later.items():
            metrics.runs_not_due(addr, len(items))
        self.index.settle(later)

    def unlease(self, leased: Leased, worker: WorkerIdentity) -> int:
        """Put leased runs that were never claimed back at the head of their queues, in their
        fetch order, if their leases are still this worker's (Redis only: the store holds them
        ``queued`` already). Nothing is spent. Returns how many went back; if Redis is away
        too, the leases expire and the reaper puts the runs back instead."""
        value = lease_value(worker.id, leased.token)
        ops = settlements()
        for queue, raw in reversed(leased.entries):  # each goes to the head: last one first
            ops[queue].append(Settle(SettleAction.UNSTARTED, raw, value))
        try:
            return self.index.settle(ops)
        except redis.RedisError as exc:
            log.warning("could not put %d leased run(s) back (%s)", len(leased), exc)
            return 0

    # --- waiting for work -----------------------------------------------------------------
    def _wake_pattern(self) -> str:
        """The PSUBSCRIBE pattern matching every queue's wake channel, of every tenant."""
        channel = self.index.keys.queue("x").wake[:-1]  # "<prefix>taskrt:wake:"
        return "".join(f"\\{c}" if c in "*?[]\\" else c for c in channel) + "*"

    def _ensure_pubsub(self, queues: Sequence[str], all_tenants: bool = False) -> Any:
        keys = self.index.keys
        with self._pubsub_lock:
            if self._pubsub is None:
                self._pubsub = self.index.redis.pubsub(  # type: ignore[no-untyped-call]
                    ignore_subscribe_messages=True
                )
                self._pubsub.subscribe(keys.control_channel(self.index.instance))
            if all_tenants:
                if not self._patterned:  # one pattern: new tenants' queues need no resubscribe
                    self._pubsub.psubscribe(self._wake_pattern())
                    self._patterned = True
                return self._pubsub
            wanted = {keys.queue(q).wake for q in queues} - self._subscribed
            if wanted:
                self._pubsub.subscribe(*wanted)
                self._subscribed |= wanted
            return self._pubsub

    def prepare_wait(self, queues: Sequence[str], *, all_tenants: bool = False) -> None:
        """Subscribe to the wake channels of ``queues`` (``all_tenants``: to the pattern of
        every queue's wake channel)."""
        self._ensure_pubsub(queues, all_tenants)

    def wait_for_work(
        self, queues: Sequence[str], timeout: float, *, all_tenants: bool = False
    ) -> frozenset[str]:
        """Block until a wake message arrives for ``queues``, a delayed run falls due, or
        ``timeout`` seconds pass; returns the addresses the wake messages named."""
        pubsub = self._ensure_pubsub(queues, all_tenants)
        if self._next_due_ms is not None and timeout > 0:
            timeout = min(timeout, self._next_due_ms / 1000 + 0.001)
        woken: set[str] = set()
        wake_prefix = self.index.keys.queue("x").wake[:-1]
        try:
            message = pubsub.get_message(timeout=max(timeout, 0.0))
            while message is not None:  # drain what else arrived: the next fetch covers it
                channel = text(message.get("channel") or b"")
                if channel.startswith(wake_prefix):
                    woken.add(channel[len(wake_prefix) :])
                message = pubsub.get_message(timeout=0)
        except redis.RedisError as exc:
            log.warning("wake-up subscription failed (%s); reconnecting", exc)
            self.close()
        return frozenset(woken)

    def interrupt_wait(self) -> None:
        """Wake this process's fetcher if it is waiting."""
        try:
            self.index.redis.publish(self.index.keys.control_channel(self.index.instance), "stop")
        except redis.RedisError:
            log.debug("could not publish the stop wake-up", exc_info=True)

    def close(self) -> None:
        """Close the wake-up subscription (the next wait subscribes again)."""
        with self._pubsub_lock:
            if self._pubsub is not None:
                with contextlib.suppress(redis.RedisError):
                    self._pubsub.close()
            self._pubsub = None
            self._subscribed = set()
            self._patterned = False
