"""Gauges read when Prometheus scrapes, never kept up to date on the hot path: queue depth (one
``counts()`` call, cached for a second), worker slots and heartbeat age, the scheduler's last
tick, the version. Registering them here also registers the run tallies' collector, in the
order the exposition has always had."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskrt._version import __version__
from taskrt.metrics.catalog import (
    HEARTBEAT_AGE_INFO,
    INFO_INFO,
    PREFETCHED_INFO,
    QUEUE_DEPTH_INFO,
    QUEUE_PAUSED_INFO,
    REGISTRY,
    SCHEDULER_LAST_TICK_INFO,
    SLOTS_BUSY_INFO,
    SLOTS_CAPACITY_INFO,
    MetricInfo,
    tenant_label,
)
from taskrt.metrics.runs import RunsCollector

if TYPE_CHECKING:
    from taskrt.records import QueueCounts

log = logging.getLogger("taskrt.metrics")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Slots(Protocol):
    @property
    def busy(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def buffered(self) -> int: ...


class _Beat(Protocol):
    @property
    def last_beat(self) -> float: ...


class WatchedWorker(Protocol):
    """What the worker gauges read from a worker (a :class:`taskrt.worker.Worker` is one)."""

    @property
    def info(self) -> _Named:
        """Its name is the ``worker`` label."""

    @property
    def slots(self) -> _Slots:
        """Busy and total handler slots, runs waiting in the prefetch buffer."""

    @property
    def heartbeat(self) -> _Beat:
        """Monotonic time of its last recorded heartbeat."""


def _family(info: MetricInfo) -> GaugeMetricFamily:
    return GaugeMetricFamily(info.name, info.help, labels=info.labels)


class _QueueDepth(Collector):
    """``taskrt_queue_depth`` and ``taskrt_queue_paused`` from one ``counts()`` call."""

    CACHE_SECONDS = 1.0

    def __init__(self) -> None:
        self._read: Callable[[], Sequence[QueueCounts]] | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, Sequence[QueueCounts]] = (0.0, ())

    def watch(self, read: Callable[[], Sequence[QueueCounts]] | None) -> None:
        """Read the counts with ``read`` (held weakly if it is a bound method); None stops."""
        if read is None:
            self._read = None
        elif hasattr(read, "__self__"):
            ref = weakref.WeakMethod(read)

            def weak() -> Sequence[QueueCounts]:
                method = ref()
                return () if method is None else method()

            self._read = weak
        else:
            self._read = read
        self._cached = (0.0, ())

    def _counts(self) -> Sequence[QueueCounts]:
        read = self._read
        if read is None:
            return ()
        with self._lock:  # concurrent scrapes share one read
            at, counts = self._cached
            if time.monotonic() - at < self.CACHE_SECONDS:
                return counts
            try:
                counts = read()
            except Exception as exc:  # the store is away: no depth this scrape, no 500
                log.warning("queue depth for metrics unavailable: %s", exc)
                counts = ()
            self._cached = (time.monotonic(), counts)
            return counts

    def describe(self) -> Iterator[Metric]:
        yield _family(QUEUE_DEPTH_INFO)
        yield _family(QUEUE_PAUSED_INFO)

    def collect(self) -> Iterator[Metric]:
        depth, paused = _family(QUEUE_DEPTH_INFO), _family(QUEUE_PAUSED_INFO)
        # keyed by labels: with TASKRT_METRICS_TENANT_LABEL off, tenants' same-named queues
        # add up into one series (a scrape must not hold the same labels twice)
        depths: dict[tuple[str, str, str], float] = {}
        pauses: dict[tuple[str, str], float] = {}
        for c in self._counts():
            queue = (tenant_label(c.tenant), c.name)
            state_values: tuple[tuple[str, float], ...] = (
                ("ready", c.ready),
                ("delayed", c.delayed),
                ("inflight", c.inflight),
                ("dlq", c.dlq),
            )
            for state, value in state_values:
                depths[(*queue, state)] = depths.get((*queue, state), 0.0) + value
            pauses[queue] = max(pauses.get(queue, 0.0), 1.0 if c.paused else 0.0)
        for labels, value in depths.items():
            depth.add_metric(list(labels), value)
        for queue_labels, flag in pauses.items():
            paused.add_metric(list(queue_labels), flag)
        yield depth
        yield paused


class _Workers(Collector):
    """Slots, prefetch buffer and heartbeat age of the workers running in this process."""

    def __init__(self) -> None:
        self._workers: weakref.WeakSet[WatchedWorker] = weakref.WeakSet()

    def watch(self, worker: WatchedWorker) -> None:
        self._workers.add(worker)

    def describe(self) -> Iterator[Metric]:
        for info in (SLOTS_BUSY_INFO, SLOTS_CAPACITY_INFO, PREFETCHED_INFO, HEARTBEAT_AGE_INFO):
            yield _family(info)

    def collect(self) -> Iterator[Metric]:
        busy, capacity = _family(SLOTS_BUSY_INFO), _family(SLOTS_CAPACITY_INFO)
        prefetched, age = _family(PREFETCHED_INFO), _family(HEARTBEAT_AGE_INFO)
        now = time.monotonic()
        for worker in list(self._workers):
            name = [worker.info.name]
            busy.add_metric(name, worker.slots.busy)
            capacity.add_metric(name, worker.slots.capacity)
            prefetched.add_metric(name, worker.slots.buffered)
            age.add_metric(name, max(now - worker.heartbeat.last_beat, 0.0))
        yield from (busy, capacity, prefetched, age)


class _Scheduler(Collector):
    """When the scheduler in this process last ticked."""

    def __init__(self) -> None:
        self.last_tick: float | None = None

    def describe(self) -> Iterator[Metric]:
        yield _family(SCHEDULER_LAST_TICK_INFO)

    def collect(self) -> Iterator[Metric]:
        family = _family(SCHEDULER_LAST_TICK_INFO)
        if self.last_tick is not None:
            family.add_metric([], self.last_tick)
        yield family


class _Info(Collector):
    def describe(self) -> Iterator[Metric]:
        yield _family(INFO_INFO)

    def collect(self) -> Iterator[Metric]:
        family = _family(INFO_INFO)
        family.add_metric([__version__], 1.0)
        yield family


_QUEUES = _QueueDepth()
_WORKERS = _Workers()
_SCHEDULER = _Scheduler()
LIVE: tuple[Collector, ...] = (RunsCollector(), _QUEUES, _WORKERS, _SCHEDULER, _Info())
"""The collectors read at scrape time, in the order they are registered."""
for _collector in LIVE:
    REGISTRY.register(_collector)


def watch_queues(read: Callable[[], Sequence[QueueCounts]] | None) -> None:
    """Export queue depth read by ``read`` (e.g. ``TaskService.queues``); None stops."""
    _QUEUES.watch(read)


def watch_worker(worker: WatchedWorker) -> None:
    """Export ``worker``'s slots and heartbeat age while it lives."""
    _WORKERS.watch(worker)


def scheduler_ticked() -> None:
    """Note that the scheduler in this process just finished a tick that reached the database
    (the ``taskrt_scheduler_last_tick_timestamp_seconds`` gauge)."""
    _SCHEDULER.last_tick = time.time()
