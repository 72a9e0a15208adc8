"""The catalog: every metric taskrt exports, defined once, in the order the reference lists
them (``python -m scripts.refdocs metrics`` writes the reference from :data:`CATALOG`).

Counters and histograms recorded through prometheus-client live in :data:`REGISTRY`; metrics a
collector produces at scrape time are described here too (:func:`_described`), so the catalog is
complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

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

_tenant_label = [True]


def label_tenants(enabled: bool) -> None:
    """Whether the ``tenant`` label carries the tenant's name (TASKRT_METRICS_TENANT_LABEL).

    Off, its value is empty: Prometheus treats an empty label as absent, so the series of all
    tenants add up into one and the cardinality is that of a single-tenant deployment. The
    label set itself never changes (the catalog is fixed at import).
    """
    _tenant_label[0] = enabled


def tenant_label(tenant: str) -> str:
    """The ``tenant`` label's value for ``tenant``: its name, or empty when labels are off."""
    return tenant if _tenant_label[0] else ""


RUN_LABELS = ("tenant", "queue", "task_type")
QUEUE_LABELS = ("tenant", "queue")
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
    "max by (tenant, queue, state).",
    (*QUEUE_LABELS, "state"),
)
QUEUE_PAUSED_INFO = _gauge(
    "taskrt_queue_paused",
    "1 while the queue is paused, else 0. Read at scrape time.",
    QUEUE_LABELS,
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

# --- worker and Redis operations ------------------------------------------------------------

RUNS_NOT_DUE = _counter(
    "taskrt_runs_not_due",
    "Runs Redis handed a worker before their due time by the database clock; the claim "
    "refused them and put them back in their delayed set without spending an attempt. A "
    "steady rate means the Redis and database clocks are apart (harmless, but check NTP).",
    QUEUE_LABELS,
)
REDIS_REBUILDS = _counter(
    "taskrt_redis_rebuilds",
    "Times this process found Redis had lost the queues (reason: missing, the marker key "
    "was gone; restarted, the server's run id changed) and rebuilt them from the database.",
    ("reason",),
)
CLAIM_FAILURES = _counter(
    "taskrt_claim_failures",
    "Claims of leased runs that failed because the store was away; their runs went straight "
    "back to their queues (no attempt spent) and the worker backed off.",
    QUEUE_LABELS,
)
CLAIMS_UNDONE = _counter(
    "taskrt_claims_undone",
    "Runs whose claim a database crash undid after their handler ran (the claim was "
    "committed without waiting for the WAL flush): the outcome was refused, the run was "
    "queued again and put back in its queue; its handler runs again under the same attempt.",
    RUN_LABELS,
)

# --- tenants --------------------------------------------------------------------------------

QUOTA_REFUSALS = _counter(
    "taskrt_quota_refusals",
    "Enqueues a tenant's quota refused (HTTP 429; nothing was stored), by tenant and quota: "
    "`max-queued` (too many tasks waiting) or `enqueue-rate` (too many created per period). "
    "Counted by the process that refused them; a batch counts once.",
    ("tenant", "quota"),
)

# --- history ----------------------------------------------------------------------------------

ROWS_PRUNED = _counter(
    "taskrt_rows_pruned",
    "Rows pruning deleted (docs/how-to/retention.md), by table: tasks, runs, audit, "
    "schedule_fires; counted by the process that deleted them (a worker's maintenance pass, "
    "`taskrt prune`, or the API's `POST /api/v1/admin/prune`).",
    ("table",),
)
