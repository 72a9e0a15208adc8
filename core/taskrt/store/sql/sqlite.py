"""SQLite's statements, executed through SQLAlchemy.

SQLite has no data-modifying CTEs, so the hot paths that PostgreSQL does in one statement take
two or three here, in one transaction (every SQLite transaction starts with ``BEGIN
IMMEDIATE``: writers are serialized, so no row locks are needed).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from taskrt.db import models
from taskrt.db.types import db_now, db_now_plus

_RUNS = models.task_runs
_TASKS = models.tasks
_QUEUES = models.queues

# --- claim --------------------------------------------------------------------------------------

CLAIMED_RUN_COLUMNS = (
    _RUNS.c.id,
    _RUNS.c.task_id,
    _RUNS.c.attempt,
    _RUNS.c.queue_name,
    _RUNS.c.enqueued_at,
    _RUNS.c.available_at,
    _RUNS.c.started_at,
    _RUNS.c.suspect,
    _RUNS.c.tenant,
)
CLAIMED_TASK_COLUMNS = (
    _TASKS.c.name,
    _TASKS.c.payload,
    _TASKS.c.max_retries,
    _TASKS.c.retry_strategy,
    _TASKS.c.retry_params,
    _TASKS.c.timeout_seconds,
    _TASKS.c.trace_id,
    _TASKS.c.retry_count,
    _TASKS.c.lost_runs,
    _TASKS.c.cancel_requested_at,
)


def _claim(*where: sa.ColumnElement[bool]) -> Any:
    return (
        sa.update(_RUNS)
        .where(
            *where,
            _RUNS.c.status == "queued",
            # the database clock decides when a run may start, whatever queue fetched it
            _RUNS.c.available_at <= db_now(),
        )
        .values(
            status="running",
            worker_id=sa.bindparam("worker_id", type_=sa.Uuid()),
            lease_token=sa.bindparam("lease_token", type_=sa.String()),
            started_at=db_now(),
            lease_expires_at=db_now_plus(sa.bindparam("lease_ttl", type_=sa.Float())),
            isolated_at=None,  # set again only when this worker starts it alone
        )
        .returning(*CLAIMED_RUN_COLUMNS)
    )


CLAIM_BY_IDS = _claim(_RUNS.c.id.in_(sa.bindparam("ids", expanding=True)))
"""Claim the queued, due runs ``ids``; returns CLAIMED_RUN_COLUMNS."""

_PICKED = (
    sa.select(_RUNS.c.id)
    .where(
        _RUNS.c.tenant == sa.bindparam("of_tenant", type_=sa.String()),
        _RUNS.c.queue_name == sa.bindparam("queue", type_=sa.String()),
        _RUNS.c.status == "queued",
        _RUNS.c.available_at <= db_now(),
        ~sa.exists().where(
            _QUEUES.c.tenant == sa.bindparam("of_tenant", type_=sa.String()),
            _QUEUES.c.name == sa.bindparam("queue", type_=sa.String()),
            _QUEUES.c.paused,
        ),
    )
    .order_by(_RUNS.c.available_at, _RUNS.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
    .cte("picked")
)
CLAIM_NEXT = _claim(_RUNS.c.id == _PICKED.c.id)
"""Claim the ``limit`` oldest due runs of ``tenant``'s ``queue`` unless it is paused."""

CLAIM_TASKS = (
    sa.update(_TASKS)
    .where(_TASKS.c.id.in_(sa.bindparam("task_ids", expanding=True)))
    .values(status="running", updated_at=db_now())
    .returning(_TASKS.c.id, *CLAIMED_TASK_COLUMNS)
)
"""Mark the tasks ``task_ids`` of claimed runs running; returns id and CLAIMED_TASK_COLUMNS."""

# --- renew --------------------------------------------------------------------------------------

RENEW_LEASES = (
    sa.update(_RUNS)
    .where(
        _RUNS.c.id.in_(sa.bindparam("ids", expanding=True)),
        _RUNS.c.status == "running",
        _RUNS.c.worker_id == sa.bindparam("owner", type_=sa.Uuid()),
    )
    .values(lease_expires_at=db_now_plus(sa.bindparam("lease_ttl", type_=sa.Float())))
    .returning(_RUNS.c.id)
)
"""Extend the leases of ``ids`` that worker ``owner`` holds; returns those runs."""

CANCEL_REQUESTED = (
    sa.select(_RUNS.c.id)
    .join(_TASKS, _TASKS.c.id == _RUNS.c.task_id)
    .where(
        _RUNS.c.id.in_(sa.bindparam("ids", expanding=True)),
        _TASKS.c.cancel_requested_at.is_not(None),
    )
)
"""Of the runs ``ids``, those whose task was asked to cancel."""

# --- finish -------------------------------------------------------------------------------------

FINISH_RUNS = sa.text(
    """
    UPDATE task_runs SET
        status = v.status,
        started_at = strftime('%Y-%m-%d %H:%M:%f000', task_runs.started_at,
            printf('%+.3f seconds', coalesce(v.start_delay, 0))),
        finished_at = strftime('%Y-%m-%d %H:%M:%f000', 'now'),
        result = v.result_json,
        error_type = v.error_type,
        error_message = v.error_message,
        error_traceback = v.error_traceback,
        outcome_reason = v.reason,
        next_retry_at = CASE WHEN v.delay IS NULL THEN NULL
            ELSE strftime('%Y-%m-%d %H:%M:%f000', 'now', printf('%+.3f seconds', v.delay)) END,
        lease_expires_at = NULL
    FROM (
        SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.token') AS token,
               json_extract(value, '$.status') AS status,
               json_extract(value, '$.result_json') AS result_json,
               json_extract(value, '$.error_type') AS error_type,
               json_extract(value, '$.error_message') AS error_message,
               json_extract(value, '$.error_traceback') AS error_traceback,
               json_extract(value, '$.reason') AS reason, json_extract(value, '$.delay') AS delay,
               json_extract(value, '$.start_delay') AS start_delay
        FROM json_each(:batch)
    ) AS v
    WHERE task_runs.id = v.id AND task_runs.status = 'running' AND task_runs.lease_token = v.token
    RETURNING task_runs.id
    """
)
"""Write the JSON ``batch`` of outcomes to the runs, each fenced by (id, status 'running',
lease token); returns the ids of the runs that won (as SQLite stores them)."""
