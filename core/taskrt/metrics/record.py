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
    REDIS_REBUILDS,
    ROWS_PRUNED,
    RUNS_HANDED_BACK,
    RUNS_NOT_DUE,
    SCHEDULER_FIRE_LAG,
    SCHEDULER_FIRES,
    TASKS_CREATED,
)


def tasks_created(created: Iterable[tuple[str, str]]) -> None:
    """Count created tasks, given as (queue, task type) pairs."""
    for queue, task_type in created:
        TASKS_CREATED.labels(queue, task_type).inc()


def schedule_fired(fires: Iterable[tuple[str, str, float]]) -> None:
    """Count schedule fires with their lag, given as (queue, task type, lag seconds)."""
    for queue, task_type, lag in fires:
        SCHEDULER_FIRES.labels(queue, task_type).inc()
        SCHEDULER_FIRE_LAG.labels(queue, task_type).observe(max(lag, 0.0))


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


def runs_not_due(queue: str, count: int) -> None:
    """Count runs a claim refused because they were not due yet by the database clock."""
    RUNS_NOT_DUE.labels(queue).inc(count)


def redis_rebuilt(reason: str) -> None:
    """Count one rebuild of the Redis queues after a loss."""
    REDIS_REBUILDS.labels(reason).inc()


def claim_failed(queues: Iterable[str]) -> None:
    """Count one failed claim per leased run, by queue."""
    for queue in queues:
        CLAIM_FAILURES.labels(queue).inc()


def claims_undone(pairs: Iterable[tuple[str, str]]) -> None:
    """Count runs whose claim a database crash undid, as (queue, task type) pairs."""
    for queue, task_type in pairs:
        CLAIMS_UNDONE.labels(queue, task_type).inc()


def api_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request."""
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_REQUEST_DURATION.labels(method, route).observe(seconds)


def rows_pruned(counts: Mapping[str, int]) -> None:
    """Count rows pruning deleted, given per table."""
    for table, count in counts.items():
        if count:
            ROWS_PRUNED.labels(table).inc(count)
