"""Every Prometheus metric taskrt exports.

Counters and histograms are recorded by subscribers of taskrt's events (see
:mod:`taskrt.subscribers` and docs/concepts/events.md): the service's "tasks created" counts
created tasks, the worker's "runs finished" counts outcomes (retries and dead letters
included) once the store accepted them, with each run's start latency and duration, the
maintenance loop's "runs lost" counts lost runs, the scheduler's "schedule fired" its fires. A
few operational counters of the worker and the Redis backend (claim failures, event-loop stalls,
handed-back runs, abandoned handlers, runs not due, Redis rebuilds) and an ASGI middleware's
HTTP requests are counted by direct calls. The worker's numbers are plain per-thread tallies
added up at scrape time (:mod:`.runs`), so a run costs no lock. Gauges are read when Prometheus
scrapes, never kept up to date on the hot path (:mod:`.gauges`).

Where it is served: the HTTP API at ``/metrics``; ``taskrt worker`` and ``taskrt scheduler`` on
``--metrics-port`` (``TASKRT_METRICS_PORT``), one port per process. ``taskrt api --workers N``
runs N processes: they share their counters through prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``), so any of them answers a scrape with the sum. Why one port per
worker process and multiprocess mode only for the API: docs/design/decisions.md, "Observability".

Nothing here connects to anything or starts a thread at import; :data:`REGISTRY` holds only
taskrt's metrics (register it into another registry to expose them from an application's own
``/metrics``). ``python -m scripts.refdocs metrics`` writes the reference from :data:`CATALOG`.

The package: :mod:`.catalog` defines every metric, :mod:`.runs` the run tallies, :mod:`.record`
the one-at-a-time counters, :mod:`.gauges` the scrape-time gauges, :mod:`.exposition` serving.
"""

from __future__ import annotations

from taskrt._version import __version__
from taskrt.metrics.catalog import (
    CATALOG,
    MULTIPROC_ENV,
    REGISTRY,
    MetricInfo,
    label_tenants,
    tenant_label,
)
from taskrt.metrics.exposition import exposition_registry, multiprocess_mode, render, serve
from taskrt.metrics.gauges import (
    WatchedWorker,
    _QueueDepth,
    scheduler_ticked,
    watch_queues,
    watch_worker,
)
from taskrt.metrics.record import (
    api_request,
    claim_failed,
    claims_undone,
    event_loop_stalled,
    handler_abandoned,
    outcome_unwritable,
    quota_refused,
    redis_rebuilt,
    rows_pruned,
    runs_handed_back,
    runs_not_due,
    schedule_fired,
    tasks_created,
)
from taskrt.metrics.runs import TimedRun, record_finishes, runs_lost, runs_written

__all__ = [
    "CATALOG",
    "MULTIPROC_ENV",
    "REGISTRY",
    "MetricInfo",
    "TimedRun",
    "WatchedWorker",
    "_QueueDepth",
    "__version__",
    "api_request",
    "claim_failed",
    "claims_undone",
    "event_loop_stalled",
    "exposition_registry",
    "handler_abandoned",
    "label_tenants",
    "multiprocess_mode",
    "outcome_unwritable",
    "quota_refused",
    "record_finishes",
    "redis_rebuilt",
    "render",
    "rows_pruned",
    "runs_handed_back",
    "runs_lost",
    "runs_not_due",
    "runs_written",
    "schedule_fired",
    "scheduler_ticked",
    "serve",
    "tasks_created",
    "tenant_label",
    "watch_queues",
    "watch_worker",
]
