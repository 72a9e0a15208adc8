"""Counting one event at a time: created tasks, scheduler fires, HTTP requests, and the
worker's and Redis backend's operational counters (handed-back runs, claim failures, stalls).

The run outcomes a worker writes by the thousand a second are counted in :mod:`.runs` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from taskrt.metrics.catalog import (
    API_REQUEST_DURATION,
    API_REQUESTS,
    CLAIM_FAILURES,
    CLAIMS_UNDONE,
    EVENT_LOOP_STALLS,
    HANDLERS_ABANDONED,
    OUTCOMES_UNWRITABLE,
    QUOTA_REFUSALS,
    REDIS_REBUILDS,
    ROWS_PRUNED,
    RUNS_HANDED_BACK,
    RUNS_NOT_DUE,
    SCHEDULER_FIRE_LAG,
    SCHEDULER_FIRES,
    TASKS_CREATED,
    tenant_label,
)
from taskrt.records import DEFAULT_TENANT, split_address

RunKey = tuple[str, str] | tuple[str, str, str]
"""``(queue, task type)`` of the default tenant, or ``(tenant, queue, task type)``."""


def _run_labels(key: RunKey) -> tuple[str, str, str]:
    if len(key) == 3:
        return tenant_label(key[0]), key[1], key[2]
    return tenant_label(DEFAULT_TENANT), key[0], key[1]


def _queue_labels(queue: str | tuple[str, str]) -> tuple[str, str]:
    """``(tenant, queue)`` labels of a queue address (``acme/emails``) or a (tenant, queue)."""
    tenant, name = split_address(queue) if isinstance(queue, str) else queue
    return tenant_label(tenant), name


def tasks_created(created: Iterable[RunKey]) -> None:
    """Count created tasks, given as (tenant, queue, task type) (or (queue, task type) of the
    default tenant)."""
    for key in created:
        TASKS_CREATED.labels(*_run_labels(key)).inc()


def schedule_fired(fires: Iterable[tuple[str, str, str, float]]) -> None:
    """Count schedule fires with their lag, given as (tenant, queue, task type, lag seconds)."""
    for tenant, queue, task_type, lag in fires:
        labels = _run_labels((tenant, queue, task_type))
        SCHEDULER_FIRES.labels(*labels).inc()
        SCHEDULER_FIRE_LAG.labels(*labels).observe(max(lag, 0.0))


def handler_abandoned(
    queue: str, task_type: str, kind: str, *, tenant: str = DEFAULT_TENANT
) -> None:
    """Count a handler whose run was failed at its hard deadline while it still ran."""
    HANDLERS_ABANDONED.labels(*_run_labels((tenant, queue, task_type)), kind).inc()


def event_loop_stalled(worker: str) -> None:
    """Count one stall of ``worker``'s event loop."""
    EVENT_LOOP_STALLS.labels(worker).inc()


def runs_handed_back(pairs: Iterable[RunKey], reason: str) -> None:
    """Count claimed runs handed back untouched, given as (tenant, queue, task type) (or
    (queue, task type) of the default tenant)."""
    for key in pairs:
        RUNS_HANDED_BACK.labels(*_run_labels(key), reason).inc()


def outcome_unwritable(queue: str, task_type: str, *, tenant: str = DEFAULT_TENANT) -> None:
    """Count one outcome the store refused for its data."""
    OUTCOMES_UNWRITABLE.labels(*_run_labels((tenant, queue, task_type))).inc()


def runs_not_due(queue: str, count: int) -> None:
    """Count runs a claim refused because they were not due yet by the database clock
    (``queue``: the queue's address, ``acme/emails``, or a default tenant's bare name)."""
    RUNS_NOT_DUE.labels(*_queue_labels(queue)).inc(count)


def redis_rebuilt(reason: str) -> None:
    """Count one rebuild of the Redis queues after a loss."""
    REDIS_REBUILDS.labels(reason).inc()


def claim_failed(queues: Iterable[str | tuple[str, str]]) -> None:
    """Count one failed claim per leased run, by queue: addresses or (tenant, queue) pairs."""
    for queue in queues:
        CLAIM_FAILURES.labels(*_queue_labels(queue)).inc()


def claims_undone(pairs: Iterable[RunKey]) -> None:
    """Count runs whose claim a database crash undid, as (tenant, queue, task type) (or
    (queue, task type) of the default tenant)."""
    for key in pairs:
        CLAIMS_UNDONE.labels(*_run_labels(key)).inc()


def quota_refused(tenant: str, quota: str) -> None:
    """Count one enqueue (a task or a batch) refused by ``tenant``'s ``quota``."""
    QUOTA_REFUSALS.labels(tenant_label(tenant), quota).inc()


def api_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request."""
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_REQUEST_DURATION.labels(method, route).observe(seconds)


def rows_pruned(counts: Mapping[str, int]) -> None:
    """Count rows pruning deleted, given per table."""
    for table, count in counts.items():
        if count:
            ROWS_PRUNED.labels(table).inc(count)
