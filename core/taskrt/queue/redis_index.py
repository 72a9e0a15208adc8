"""The pieces every part of the Redis backend shares: the client, keys and scripts of one
deployment, and the two moves the others are built from (placing runs, settling runs).

The backend (:mod:`taskrt.queue.redis_backend`), its fetcher, reaper, reconciler and recovery
all sit on top of :class:`RedisIndex`; none of them imports another's module to reach it.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import redis
from redis.client import Pipeline

from taskrt.ids import uuid7
from taskrt.queue.keyspace import Keyspace
from taskrt.queue.scripts import Scripts
from taskrt.records import DispatchEntry
from taskrt.settings import Settings
from taskrt.store import Store

CHUNK = 500  # runs per script call: keeps Lua's unpack() and each call short
PROMOTE_PER_FETCH = 200
MAX_DELAY_S = 10.0**11  # about 3,000 years: far beyond any due time, well inside a score
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lease_value(worker_id: uuid.UUID, lease_token: str) -> str:
    """The value a lease holds in ``queue:{q}:leases``: the worker's id and the lease token."""
    return f"{worker_id}:{lease_token}"


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def delay_ms(seconds: float) -> int:
    """A delay in whole milliseconds, rounded up and bounded (a score Redis can hold)."""
    if not seconds > 0:  # also NaN
        return 0
    return math.ceil(min(seconds, MAX_DELAY_S) * 1000)


def text(value: bytes | str) -> str:
    """A Redis reply as text (bytes that are not UTF-8 are replaced, never raised on)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class SettleAction(enum.StrEnum):
    """What ``settle.lua`` does with one run. Each member is the script's one-letter code."""

    ACK = "A"
    """Release the lease (the run finished)."""
    RETRY = "R"
    """Release, then place the next run (``target``) ready, or delayed for ``delay_ms``."""
    DEAD_LETTER = "D"
    """Release, then append task ``target`` to the dead-letter list."""
    HAND_BACK = "Q"
    """Release, then put the run back at the head of the ready list."""
    UNSTARTED = "U"
    """Only if the lease is still the given one: release and put back at the head."""
    DROP = "X"
    """Release (only if the lease is still the given one); the run goes nowhere."""
    LATER = "L"
    """Only if the lease is still the given one: release and put the run back in the delayed
    set for ``delay_ms`` (the store said it is not due yet)."""


class Settle(NamedTuple):
    """One run for ``settle.lua`` to move: an action, the run's entry, the lease it held. The
    fields are the script's five arguments per run, in its order."""

    action: SettleAction
    entry: str | bytes
    """The run id as the queue holds it (raw bytes for garbage: released by its exact value)."""
    lease: str | bytes
    """The lease value the worker held (:func:`lease_value`)."""
    target: str = ""
    """RETRY: the next run's id; DEAD_LETTER: the task's id."""
    delay_ms: int = 0
    """RETRY and LATER: milliseconds until the run falls due (by the store's clock)."""


Settlements = dict[str, list[Settle]]
"""Settles grouped by queue address (each address's keys share one cluster slot)."""


def settlements() -> Settlements:
    """An empty :data:`Settlements` that creates a queue's list on first use."""
    return defaultdict(list)


class RedisIndex:
    """The queues in one Redis deployment (a rebuildable index of the store's queued runs)."""

    def __init__(self, store: Store, client: redis.Redis, settings: Settings) -> None:
        self.store = store
        self.redis = client
        self.settings = settings
        self.keys = Keyspace(settings.redis_prefix)
        self.scripts = Scripts(client)
        self.instance = uuid7().hex
        """This process's name in locks and on its private control channel."""
        self._registered: set[str] = set()

    def place(self, entries: Sequence[DispatchEntry]) -> None:
        """Put committed queued runs in their queues (one script call per queue address and
        chunk);
        a run already present or in flight is skipped by the script."""
        if not entries:
            return
        by_queue: dict[str, list[DispatchEntry]] = defaultdict(list)
        for entry in entries:
            by_queue[entry.address].append(entry)

        new_queues = [q for q in by_queue if q not in self._registered]
        left = self.left_ms(entries)

        def build(pipe: Pipeline) -> None:
            if new_queues:  # once per queue and process; the reconciler re-adds lost names
                pipe.sadd(self.keys.queues, *new_queues)
            for queue, items in by_queue.items():
                k = self.keys.queue(queue)
                for chunk in chunks(items):
                    args: list[Any] = [k.wake]
                    for e in chunk:
                        args.extend((str(e.run_id), left.get(e.run_id, 0)))
                    self.scripts.dispatch(
                        keys=[k.ready, k.delayed, k.inflight], args=args, client=pipe
                    )

        self.scripts.run_pipeline(build)
        self._registered.update(new_queues)

    def left_ms(self, entries: Sequence[DispatchEntry]) -> dict[uuid.UUID, int]:
        """Milliseconds each delayed entry has left by the database clock (read once, only
        if some entry has a due time). Redis scores them from its own TIME plus that, so the
        two servers' clocks never meet in one comparison."""
        delayed = [e for e in entries if e.due_ms is not None]
        if not delayed:
            return {}
        now = self.store.clock()
        now_ms = (now - _EPOCH) // timedelta(milliseconds=1)
        return {e.run_id: int(e.due_ms or 0) - now_ms for e in delayed}

    def settle(self, ops: Settlements) -> int:
        """Run the settles (one pipeline); returns how many the script applied."""
        if not ops:
            return 0

        def build(pipe: Pipeline) -> None:
            for queue, settles in ops.items():
                k = self.keys.queue(queue)
                for chunk in chunks(settles):
                    args: list[Any] = [k.wake]
                    for settle in chunk:
                        args.extend(settle)
                    self.scripts.settle(
                        keys=[k.inflight, k.leases, k.ready, k.delayed, k.dlq],
                        args=args,
                        client=pipe,
                    )

        return sum(int(applied or 0) for applied in self.scripts.run_pipeline(build))

    def wake(self, queue: str) -> None:
        """Clear the pause of ``queue`` and wake its idle workers."""
        k = self.keys.queue(queue)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(k.paused)
        pipe.publish(k.wake, "w")
        pipe.execute()

    def forget_registered_queues(self) -> None:
        """Register queue names again on their next placement (Redis lost its registry)."""
        self._registered = set()

    def known_queues(self) -> list[str]:
        """Queue addresses in the Redis registry."""
        return sorted(text(name) for name in self.redis.smembers(self.keys.queues))

    def take_lock(self, name: str, ttl: float) -> bool:
        """Take the maintenance lock ``name`` for ``ttl`` seconds unless another process has it."""
        return bool(
            self.redis.set(self.keys.lock(name), self.instance, nx=True, px=int(ttl * 1000))
        )
