"""Every Prometheus metric taskrt exports, defined in this one module.

Counters and histograms are recorded where taskrt already keeps its books: the service layer
counts created tasks, the worker's finisher counts outcomes (retries and dead letters included)
once the store accepted them, with each run's start latency and duration (the executor only
notes when the handler ended), the maintenance loop counts lost runs, the scheduler its fires,
an ASGI middleware the HTTP requests. The worker's numbers are plain per-thread tallies added
up at scrape time (see "recording runs" below), so a run costs no lock. Gauges are read when
Prometheus scrapes, never kept up to date on the hot path: queue depth (one ``counts()`` call,
cached for a second), worker slots and heartbeat age, the scheduler's last tick.

Where it is served: the HTTP API at ``/metrics``; ``taskrt worker`` and ``taskrt scheduler`` on
``--metrics-port`` (``TASKRT_METRICS_PORT``), one port per process. ``taskrt api --workers N``
runs N processes: they share their counters through prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``), so any of them answers a scrape with the sum. Why one port per
worker process and multiprocess mode only for the API: docs/design/decisions.md, "Observability".

Nothing here connects to anything or starts a thread at import; :data:`REGISTRY` holds only
taskrt's metrics (register it into another registry to expose them from an application's own
``/metrics``). ``python -m taskrt.docs metrics`` writes the reference from :data:`CATALOG`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from taskrt._version import __version__
from taskrt.exceptions import ConfigurationError

if TYPE_CHECKING:
    from taskrt.records import LostRun, QueueCounts, RunFinish
    from taskrt.schedule_service import FireReport
    from taskrt.worker import Worker
    from taskrt.worker.execution import ActiveRun

log = logging.getLogger("taskrt.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's switch for multiprocess mode (read when it is first imported)."""

Kind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What the reference says about one metric."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str

    def sample_names(self) -> tuple[str, ...]:
        """The series names Prometheus stores for it (``_total``, ``_bucket`` ...)."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


CATALOG: list[MetricInfo] = []
"""Every metric, in definition order (the reference lists them in this order)."""

REGISTRY = CollectorRegistry(auto_describe=True)
"""taskrt's metrics and nothing else (no process or Python metrics)."""

RUN_LABELS = ("queue", "task_type")
OUTCOMES = ("succeeded", "failed", "lost", "cancelled")
# reasons whose series exist from the first run of a type on, so that increase() and rate()
# see their first event (a series that starts at 1 shows no increase)
COMMON_RETRY_REASONS = ("error", "timeout", "lost", "retry_requested")
COMMON_DEAD_LETTER_REASONS = ("retries_exhausted", "non_retryable", "lost")

START_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)  # fmt: skip
DURATION_BUCKETS = (0.001, *START_LATENCY_BUCKETS)
FIRE_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# Every counter and histogram has labels: prometheus-client makes the value of an unlabelled
# one at once, which in multiprocess mode writes a file at import, in every process (even
# `taskrt queues`). Labelled children are made on first use.


def _counter(name: str, help_text: str, labels: Sequence[str]) -> Counter:
    CATALOG.append(MetricInfo(name, "counter", tuple(labels), help_text))
    return Counter(name, help_text, labels, registry=REGISTRY)


def _histogram(
    name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]
) -> Histogram:
    CATALOG.append(MetricInfo(name, "histogram", tuple(labels), help_text))
    return Histogram(name, help_text, labels, registry=REGISTRY, buckets=buckets)


def _described(name: str, kind: Kind, help_text: str, labels: Sequence[str] = ()) -> MetricInfo:
    """A metric a collector of this module produces when scraped."""
    info = MetricInfo(name, kind, tuple(labels), help_text)
    CATALOG.append(info)
    return info


def _gauge(name: str, help_text: str, labels: Sequence[str] = ()) -> MetricInfo:
    return _described(name, "gauge", help_text, labels)


# --- tasks and runs ---------------------------------------------------------------------------

TASKS_CREATED = _counter(
    "taskrt_tasks_created",
    "Tasks created, by the process that created them (API, scheduler, client). An enqueue "
    "that returned the live task holding its dedup key creates nothing and is not counted.",
    RUN_LABELS,
)
RUNS_FINISHED_INFO = _described(
    "taskrt_runs_finished",
    "counter",
    "Runs that ended, by outcome: succeeded, failed (a retry or a dead letter may follow), "
    "lost (the worker vanished; counted by the worker whose maintenance pass reaped it) or "
    "cancelled. Counted once the store accepted the outcome.",
    (*RUN_LABELS, "outcome"),
)
RETRIES_INFO = _described(
    "taskrt_retries",
    "counter",
    "Retries scheduled: a failed or lost run followed by a new run, by reason (error, "
    "timeout, lost, retry_requested).",
    (*RUN_LABELS, "reason"),
)
DEAD_LETTERED_INFO = _described(
    "taskrt_dead_lettered",
    "counter",
    "Tasks moved to the dead-letter queue by a worker, by reason (retries_exhausted, "
    "non_retryable, lost, not_retried).",
    (*RUN_LABELS, "reason"),
)
RUN_START_LATENCY_INFO = _described(
    "taskrt_run_start_latency_seconds",
    "histogram",
    "Seconds from a run becoming due (its enqueue, or the end of its delay) to its handler "
    "starting, by the database's clock plus the time it waited in the worker's prefetch buffer; "
    "recorded with the run's outcome.",
    RUN_LABELS,
)
RUN_DURATION_INFO = _described(
    "taskrt_run_duration_seconds",
    "histogram",
    "Seconds a handler ran, from its start to its outcome (a timed-out run counts its timeout).",
    RUN_LABELS,
)
HANDLERS_ABANDONED = _counter(
    "taskrt_handlers_abandoned",
    "Handlers still running at their run's hard deadline, whose run was failed (reason "
    "timeout) and whose slot was written off, by kind: `thread` (a `def` handler past its "
    "timeout; the thread runs on) or `coroutine` (an `async def` handler that did not stop "
    "within TASKRT_TIMEOUT_GRACE of its cancellation, or that blocked the event loop).",
    (*RUN_LABELS, "kind"),
)
EVENT_LOOP_STALLS = _counter(
    "taskrt_event_loop_stalls",
    "Times the worker's event loop did not run for TASKRT_LOOP_STALL_AFTER seconds (an "
    "`async def` handler blocking it, e.g. with time.sleep); each is also logged with the "
    "task holding the loop.",
    ("worker",),
)
RUNS_HANDED_BACK = _counter(
    "taskrt_runs_handed_back",
    "Claimed runs a worker handed back untouched (no attempt spent), by reason: "
    "`unknown_task` (this worker does not have the run's task type installed), "
    "`lease_unvouched` (a prefetched run whose lease the worker could no longer vouch for, "
    "after a pause or a store outage longer than the lease TTL: given up unstarted).",
    (*RUN_LABELS, "reason"),
)

OUTCOMES_UNWRITABLE = _counter(
    "taskrt_outcomes_unwritable",
    "Run outcomes the store refused for their data (a value out of range, text it cannot "
    "hold), written instead as a failure that dead-letters the task with reason "
    "unwritable_outcome. Each one is also logged as an ERROR by the worker.",
    RUN_LABELS,
)

# --- queues and workers (read at scrape time) -----------------------------------------------

QUEUE_DEPTH_INFO = _gauge(
    "taskrt_queue_depth",
    "Runs in a queue by state: ready, delayed, inflight (leased to a worker) and dlq "
    "(dead-lettered tasks). Read at scrape time, as `taskrt queues` shows it; exported by the "
    "API (and by workers and schedulers with TASKRT_METRICS_QUEUE_DEPTH), so aggregate with "
    "max by (queue, state).",
    ("queue", "state"),
)
QUEUE_PAUSED_INFO = _gauge(
    "taskrt_queue_paused", "1 while the queue is paused, else 0. Read at scrape time.", ("queue",)
)
SLOTS_BUSY_INFO = _gauge(
    "taskrt_worker_slots_busy", "Handlers the worker is running now.", ("worker",)
)
SLOTS_CAPACITY_INFO = _gauge(
    "taskrt_worker_slots_capacity",
    "Handlers the worker may run at once (--concurrency).",
    ("worker",),
)
PREFETCHED_INFO = _gauge(
    "taskrt_worker_prefetched_runs",
    "Claimed runs waiting in the worker's prefetch buffer for a free slot.",
    ("worker",),
)
HEARTBEAT_AGE_INFO = _gauge(
    "taskrt_worker_heartbeat_age_seconds",
    "Seconds since the worker last recorded its heartbeat in the database.",
    ("worker",),
)

# --- scheduler --------------------------------------------------------------------------------

SCHEDULER_FIRES = _counter(
    "taskrt_scheduler_fires",
    "Schedule slots this scheduler fired (each created one task).",
    RUN_LABELS,
)
SCHEDULER_FIRE_LAG = _histogram(
    "taskrt_scheduler_fire_lag_seconds",
    "Seconds from a slot's due time to its fire, by the database's clock.",
    RUN_LABELS,
    FIRE_LAG_BUCKETS,
)
SCHEDULER_LAST_TICK_INFO = _gauge(
    "taskrt_scheduler_last_tick_timestamp_seconds",
    "Unix time of the scheduler's last tick that reached the database.",
)

# --- HTTP API -------------------------------------------------------------------------------

API_REQUESTS = _counter(
    "taskrt_api_requests",
    "HTTP requests answered, by method, route template (`/api/v1/tasks/{task_id}`; "
    "`unmatched` for paths no route has) and status code.",
    ("method", "route", "status"),
)
API_REQUEST_DURATION = _histogram(
    "taskrt_api_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by method and route template.",
    ("method", "route"),
    API_BUCKETS,
)

INFO_INFO = _gauge("taskrt_info", "Always 1; the taskrt version in its label.", ("version",))


# --- recording runs (hot path: plain numbers, each kept by the one thread that writes it) ------
#
# A worker's finisher thread records every written outcome, its maintenance thread every lost
# run. Each thread keeps its own numbers (threading.local), so recording takes no lock and costs
# a few dictionary and list operations; a scrape adds up every thread's numbers (copying a dict
# or list is atomic under the GIL). This is a fifth of what prometheus-client's labelled
# children cost per run, which a worker running thousands of no-op tasks a second notices.


class _Tally:
    """What one thread recorded about the runs of one (queue, task type)."""

    __slots__ = ("dead", "duration", "duration_sum", "finished", "retries", "start", "start_sum")

    def __init__(self) -> None:
        self.finished = dict.fromkeys(OUTCOMES, 0)
        # the common reasons exist from the first run of a type on, so increase() and rate()
        # see their first event (a series that starts at 1 shows no increase)
        self.retries = dict.fromkeys(COMMON_RETRY_REASONS, 0)
        self.dead = dict.fromkeys(COMMON_DEAD_LETTER_REASONS, 0)
        self.start = [0] * (len(START_LATENCY_BUCKETS) + 1)  # per bucket, the last is +Inf
        self.start_sum = 0.0
        self.duration = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0


_local = threading.local()
_tallies: list[dict[tuple[str, str], _Tally]] = []
"""Every recording thread's tallies, by (queue, task type); kept after the thread ends."""


def _tally(queue: str, task_type: str) -> _Tally:
    try:
        mine: dict[tuple[str, str], _Tally] = _local.tallies
    except AttributeError:
        mine = _local.tallies = {}
        _tallies.append(mine)
    tally = mine.get((queue, task_type))
    if tally is None:
        tally = mine[(queue, task_type)] = _Tally()
    return tally


def runs_written(finishes: Sequence[RunFinish], actives: Sequence[ActiveRun] = ()) -> None:
    """Count outcomes the store accepted, with the retries and dead letters they caused, and
    the start latency and duration of each run that ran (``actives`` say how long)."""
    ran = {active.run.run_id: active.ran_seconds for active in actives}
    for finish in finishes:
        run = finish.run
        tally = _tally(run.queue, run.name)
        status = finish.status
        tally.finished[status] += 1
        if status == "failed":
            if finish.retry_delay is not None:
                reason = finish.reason or "error"
                tally.retries[reason] = tally.retries.get(reason, 0) + 1
            else:
                reason = finish.reason or "retries_exhausted"
                tally.dead[reason] = tally.dead.get(reason, 0) + 1
        seconds = ran.get(run.run_id)
        if seconds is None:
            continue  # it never started (cancelled first, unknown task type)
        tally.duration[bisect_left(DURATION_BUCKETS, seconds)] += 1
        tally.duration_sum += seconds
        if run.started_at is not None:
            due = max(run.enqueued_at, run.available_at)
            latency = max((run.started_at - due).total_seconds() + finish.start_delay, 0.0)
            tally.start[bisect_left(START_LATENCY_BUCKETS, latency)] += 1
            tally.start_sum += latency


def runs_lost(lost: Sequence[LostRun]) -> None:
    """Count runs a maintenance pass found lost, and the retry or dead letter that followed."""
    for run in lost:
        tally = _tally(run.queue, run.task_name)
        tally.finished["lost"] += 1
        if run.next_run is not None:
            tally.retries["lost"] += 1
        elif run.outcome == "dead_letter":
            tally.dead["lost"] += 1


def handler_abandoned(queue: str, task_type: str, kind: str) -> None:
    """Count a handler whose run was failed at its hard deadline while it still ran."""
    HANDLERS_ABANDONED.labels(queue, task_type, kind).inc()


def event_loop_stalled(worker: str) -> None:
    """Count one stall of ``worker``'s event loop."""
    EVENT_LOOP_STALLS.labels(worker).inc()


def runs_handed_back(pairs: Iterable[tuple[str, str]], reason: str) -> None:
    """Count claimed runs handed back untouched, given as (queue, task type) pairs."""
    for queue, task_type in pairs:
        RUNS_HANDED_BACK.labels(queue, task_type, reason).inc()


def outcome_unwritable(queue: str, task_type: str) -> None:
    """Count one outcome the store refused for its data."""
    OUTCOMES_UNWRITABLE.labels(queue, task_type).inc()


RUNS_NOT_DUE = _counter(
    "taskrt_runs_not_due",
    "Runs Redis handed a worker before their due time by the database clock; the claim "
    "refused them and put them back in their delayed set without spending an attempt. A "
    "steady rate means the Redis and database clocks are apart (harmless, but check NTP).",
    ("queue",),
)
REDIS_REBUILDS = _counter(
    "taskrt_redis_rebuilds",
    "Times this process found Redis had lost the queues (reason: missing, the marker key "
    "was gone; restarted, the server's run id changed) and rebuilt them from the database.",
    ("reason",),
)


def runs_not_due(queue: str, count: int) -> None:
    """Count runs a claim refused because they were not due yet by the database clock."""
    RUNS_NOT_DUE.labels(queue).inc(count)


def redis_rebuilt(reason: str) -> None:
    """Count one rebuild of the Redis queues after a loss."""
    REDIS_REBUILDS.labels(reason).inc()


CLAIM_FAILURES = _counter(
    "taskrt_claim_failures",
    "Claims of leased runs that failed because the store was away; their runs went straight "
    "back to their queues (no attempt spent) and the worker backed off.",
    ("queue",),
)
CLAIMS_UNDONE = _counter(
    "taskrt_claims_undone",
    "Runs whose claim a database crash undid after their handler ran (the claim was "
    "committed without waiting for the WAL flush): the outcome was refused, the run was "
    "queued again and put back in its queue; its handler runs again under the same attempt.",
    RUN_LABELS,
)


def claim_failed(queues: Iterable[str]) -> None:
    """Count one failed claim per leased run, by queue."""
    for queue in queues:
        CLAIM_FAILURES.labels(queue).inc()


def claims_undone(pairs: Iterable[tuple[str, str]]) -> None:
    """Count runs whose claim a database crash undid, as (queue, task type) pairs."""
    for queue, task_type in pairs:
        CLAIMS_UNDONE.labels(queue, task_type).inc()


def tasks_created(created: Iterable[tuple[str, str]]) -> None:
    """Count created tasks, given as (queue, task type) pairs."""
    for queue, task_type in created:
        TASKS_CREATED.labels(queue, task_type).inc()


def scheduler_ticked(report: FireReport) -> None:
    """Record a scheduler tick that reached the database: its fires, lags and tasks."""
    _SCHEDULER.last_tick = time.time()
    for (queue, task_type), lag in zip(report.created, report.lags, strict=True):
        SCHEDULER_FIRES.labels(queue, task_type).inc()
        SCHEDULER_FIRE_LAG.labels(queue, task_type).observe(max(lag, 0.0))
    tasks_created(report.created)


def api_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request."""
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_REQUEST_DURATION.labels(method, route).observe(seconds)


# --- gauges read at scrape time -------------------------------------------------------------


def _family(info: MetricInfo) -> GaugeMetricFamily:
    return GaugeMetricFamily(info.name, info.help, labels=info.labels)


def _cumulative(
    bounds: Sequence[float], counts: Sequence[int]
) -> tuple[list[tuple[str, float]], int]:
    """Prometheus buckets (``le``, observations at or below it) from per-bucket counts."""
    buckets, total = [], 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        total += count
        buckets.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
    return buckets, total


class _Runs(Collector):
    """Run outcomes, retries, dead letters, start latency and duration: every recording
    thread's tallies added up."""

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(RUNS_FINISHED_INFO.name, RUNS_FINISHED_INFO.help)
        yield CounterMetricFamily(RETRIES_INFO.name, RETRIES_INFO.help)
        yield CounterMetricFamily(DEAD_LETTERED_INFO.name, DEAD_LETTERED_INFO.help)
        yield HistogramMetricFamily(RUN_START_LATENCY_INFO.name, RUN_START_LATENCY_INFO.help)
        yield HistogramMetricFamily(RUN_DURATION_INFO.name, RUN_DURATION_INFO.help)

    def collect(self) -> Iterator[Metric]:
        finished: dict[tuple[str, ...], int] = {}
        retries: dict[tuple[str, ...], int] = {}
        dead: dict[tuple[str, ...], int] = {}
        start: dict[tuple[str, str], tuple[list[int], float]] = {}
        duration: dict[tuple[str, str], tuple[list[int], float]] = {}
        for mine in list(_tallies):
            for key, tally in list(mine.items()):  # copies: the owner may add meanwhile
                for into, counts in (
                    (finished, tally.finished),
                    (retries, tally.retries),
                    (dead, tally.dead),
                ):
                    for label, value in list(counts.items()):
                        into[(*key, label)] = into.get((*key, label), 0) + value
                for into_h, per_bucket, total in (
                    (start, tally.start, tally.start_sum),
                    (duration, tally.duration, tally.duration_sum),
                ):
                    have, have_sum = into_h.get(key, ([0] * len(per_bucket), 0.0))
                    added = [a + b for a, b in zip(have, list(per_bucket), strict=True)]
                    into_h[key] = (added, have_sum + total)
        for info, values in (
            (RUNS_FINISHED_INFO, finished),
            (RETRIES_INFO, retries),
            (DEAD_LETTERED_INFO, dead),
        ):
            family = CounterMetricFamily(info.name, info.help, labels=info.labels)
            for labels, value in values.items():
                family.add_metric(list(labels), value)
            yield family
        for info, bounds, values_h in (
            (RUN_START_LATENCY_INFO, START_LATENCY_BUCKETS, start),
            (RUN_DURATION_INFO, DURATION_BUCKETS, duration),
        ):
            histogram = HistogramMetricFamily(info.name, info.help, labels=info.labels)
            for labels_h, (counts_h, total_sum) in values_h.items():
                cumulative, _ = _cumulative(bounds, counts_h)
                histogram.add_metric(list(labels_h), cumulative, total_sum)
            yield histogram


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
        for c in self._counts():
            for state, value in (
                ("ready", c.ready),
                ("delayed", c.delayed),
                ("inflight", c.inflight),
                ("dlq", c.dlq),
            ):
                depth.add_metric([c.name, state], value)
            paused.add_metric([c.name], 1.0 if c.paused else 0.0)
        yield depth
        yield paused


class _Workers(Collector):
    """Slots, prefetch buffer and heartbeat age of the workers running in this process."""

    def __init__(self) -> None:
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()

    def watch(self, worker: Worker) -> None:
        self._workers.add(worker)

    def unwatch(self, worker: Worker) -> None:
        self._workers.discard(worker)

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
_LIVE: tuple[Collector, ...] = (_Runs(), _QUEUES, _WORKERS, _SCHEDULER, _Info())
for _collector in _LIVE:
    REGISTRY.register(_collector)


def watch_queues(read: Callable[[], Sequence[QueueCounts]] | None) -> None:
    """Export queue depth read by ``read`` (e.g. ``TaskService.queues``); None stops."""
    _QUEUES.watch(read)


def watch_worker(worker: Worker) -> None:
    """Export ``worker``'s slots and heartbeat age while it lives."""
    _WORKERS.watch(worker)


def unwatch_worker(worker: Worker) -> None:
    """Stop exporting ``worker``'s gauges."""
    _WORKERS.unwatch(worker)


# --- serving --------------------------------------------------------------------------------


def multiprocess_mode() -> bool:
    """True when prometheus-client keeps values in files shared by several processes."""
    return bool(os.environ.get(MULTIPROC_ENV))


_exposed: CollectorRegistry | None = None
_exposed_lock = threading.Lock()


def exposition_registry() -> CollectorRegistry:
    """What a scrape of this process returns, built once per process.

    One process: taskrt's metrics plus the usual ``process_*`` and ``python_*`` ones. In
    multiprocess mode (``taskrt api --workers N``): the counters and histograms of every
    process, summed from their files, plus this process's scrape-time gauges; per-process
    ``process_*`` metrics would describe only the process that happened to answer, so they are
    left out.
    """
    global _exposed
    with _exposed_lock:
        if _exposed is None:
            # the *_created series would double the series count for no use in PromQL
            disable_created_metrics()  # type: ignore[no-untyped-call]
            registry = CollectorRegistry(auto_describe=False)
            if multiprocess_mode():
                from prometheus_client.multiprocess import MultiProcessCollector

                MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
                for collector in _LIVE:
                    registry.register(collector)
            else:
                for collector in (REGISTRY, PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                    registry.register(collector)
            _exposed = registry
        return _exposed


def render() -> tuple[bytes, str]:
    """The body and content type of a scrape of this process."""
    return generate_latest(exposition_registry()), CONTENT_TYPE_LATEST


def serve(port: int, host: str) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns a function that
    stops it. ConfigurationError (naming the address) if the port cannot be bound."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=exposition_registry())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): give each process "
            "its own --metrics-port (TASKRT_METRICS_PORT), or 0 to serve none"
        ) from None
    log.info("metrics served at http://%s:%d/metrics", host, port)
    return server.shutdown
