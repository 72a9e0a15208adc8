"""PostgreSQL's statements, in the form psycopg runs them (``%(name)s`` placeholders).

The hot statements (insert, claim, renew, finish, the task and API-key reads) go through
psycopg directly (:class:`taskrt.store.executor.PsycopgExecutor`): SQLAlchemy's per-statement
work costs more than they do. Column lists come from the schema in :mod:`taskrt.db.models`,
never from input.
"""

from __future__ import annotations

from functools import cache

from taskrt.db import models
from taskrt.records import LIVE_TASK_STATUSES

_LIVE_DEDUP = (
    "dedup_key IS NOT NULL AND status IN (" + ", ".join(f"'{s}'" for s in LIVE_TASK_STATUSES) + ")"
)

# --- create -------------------------------------------------------------------------------------

_INSERT_TASKS = """
WITH input AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(CAST(%(batch)s AS jsonb)) AS v(
        id uuid, run_id uuid, tenant text, name text, type text, priority int, queue_name text,
        payload jsonb, status text, dedup_key text, max_retries int, retry_strategy text,
        retry_params jsonb, timeout_seconds float8, retry_count int, lost_runs int,
        trace_id text, due_at timestamptz, delay_s float8)
),
t AS (
    INSERT INTO tasks (id, tenant, name, type, priority, queue_name, payload, status,
        dedup_key, max_retries, retry_strategy, retry_params, timeout_seconds, retry_count,
        lost_runs, trace_id)
    SELECT id, tenant, name, type, priority, queue_name, payload, status, dedup_key,
        max_retries, retry_strategy, retry_params, timeout_seconds, retry_count, lost_runs,
        trace_id
    FROM input
    ON CONFLICT (tenant, name, dedup_key) WHERE {live_dedup} DO NOTHING
    RETURNING id, type
),
r AS (
    INSERT INTO task_runs (id, task_id, tenant, attempt, status, queue_name, available_at)
    SELECT input.run_id, input.id, input.tenant, 1, 'queued', input.queue_name,
        coalesce(input.due_at, statement_timestamp() + make_interval(secs => input.delay_s))
    FROM input JOIN t ON t.id = input.id
    WHERE t.type = 'immediate'
    RETURNING id, task_id, tenant, queue_name, available_at
){outbox}{audit}
SELECT t.id, r.id, r.available_at FROM t LEFT JOIN r ON r.task_id = t.id
"""
_INSERT_OUTBOX = """,
o AS (
    INSERT INTO outbox (run_id, tenant, queue_name, available_at)
    SELECT id, tenant, queue_name, available_at FROM r
)"""
# the audit rows of an HTTP create (one per task created), in the same statement: what
# write_audit would insert for action task.create
_INSERT_AUDIT = """,
a AS (
    INSERT INTO audit_log (tenant, actor, action, target_type, target_id, request_id, client_ip,
        details)
    SELECT input.tenant, %(actor)s, 'task.create', 'task', t.id::text, %(request_id)s,
        %(client_ip)s,
        jsonb_build_object('name', input.name, 'queue', input.queue_name)
    FROM t JOIN input ON input.id = t.id
)"""


@cache
def insert_tasks(*, outbox: bool, audited: bool) -> str:
    """Tasks, their first runs (and outbox and audit rows) from the JSON ``batch`` in one
    statement; returns (task id, run id, run due time) per task created (a task whose dedup
    key a live task holds is skipped). ``audited`` takes ``actor``, ``request_id`` and
    ``client_ip`` too."""
    return _INSERT_TASKS.format(
        live_dedup=_LIVE_DEDUP,
        outbox=_INSERT_OUTBOX if outbox else "",
        audit=_INSERT_AUDIT if audited else "",
    )


# --- read ---------------------------------------------------------------------------------------

_TASK_COLUMNS = ", ".join(c.name for c in models.tasks.c)
_RUN_COLUMNS = ", ".join(c.name for c in models.task_runs.c)
_API_KEY_COLUMNS = ", ".join(c.name for c in models.api_keys.c)

GET_TASK = f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = %(id)s AND tenant = %(tenant)s"  # noqa: S608
"""One task by ``id``, if it is ``tenant``'s."""

GET_RUNS = (
    f"SELECT {_RUN_COLUMNS} FROM task_runs"  # noqa: S608
    " WHERE task_id = %(id)s AND tenant = %(tenant)s ORDER BY attempt"
)
"""The runs of task ``id`` (of ``tenant``), oldest first."""

API_KEY_BY_PREFIX = f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE prefix = %(prefix)s"  # noqa: S608
"""The API key whose prefix is ``prefix``."""

# --- claim --------------------------------------------------------------------------------------

_CLAIM = """
WITH {picked}
claimed AS (
    UPDATE task_runs SET
        status = 'running',
        worker_id = %(worker_id)s,
        lease_token = %(lease_token)s,
        started_at = statement_timestamp(),
        lease_expires_at = statement_timestamp() + make_interval(secs => %(lease_ttl)s),
        isolated_at = NULL
    FROM {source}
    WHERE task_runs.id = picked.id AND task_runs.status = 'queued'
        AND task_runs.available_at <= statement_timestamp()
    RETURNING task_runs.id, task_runs.task_id, task_runs.attempt, task_runs.queue_name,
        task_runs.enqueued_at, task_runs.available_at, task_runs.started_at, task_runs.suspect,
        task_runs.tenant
),
task_rows AS (
    UPDATE tasks SET status = 'running', updated_at = statement_timestamp()
    FROM claimed WHERE tasks.id = claimed.task_id
    RETURNING tasks.id, tasks.name, tasks.payload, tasks.max_retries, tasks.retry_strategy,
        tasks.retry_params, tasks.timeout_seconds, tasks.trace_id, tasks.retry_count,
        tasks.lost_runs, tasks.cancel_requested_at
)
SELECT c.id, c.task_id, c.attempt, c.queue_name, c.enqueued_at, c.available_at, c.started_at,
    c.suspect, c.tenant, t.name, t.payload, t.max_retries, t.retry_strategy, t.retry_params,
    t.timeout_seconds, t.trace_id, t.retry_count, t.lost_runs, t.cancel_requested_at
FROM claimed c JOIN task_rows t ON t.id = c.task_id
"""

CLAIM_BY_IDS = _CLAIM.format(picked="", source="unnest(%(ids)s::uuid[]) AS picked(id)")
"""Claim the queued, due runs ``ids`` (rows in :func:`taskrt.store.mappers.claimed_run`'s
order). An unnested array joined on the primary key: with stale statistics ``id = ANY(...)``
may scan the partial index of queued runs instead."""

CLAIM_NEXT = _CLAIM.format(
    picked="""picked AS MATERIALIZED (
    SELECT id FROM task_runs
    WHERE tenant = %(tenant)s AND queue_name = %(queue)s AND status = 'queued'
        AND available_at <= statement_timestamp()
        AND NOT EXISTS (
            SELECT 1 FROM queues WHERE tenant = %(tenant)s AND name = %(queue)s AND paused)
    ORDER BY available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),""",
    source="picked",
)
"""Claim the ``limit`` oldest due runs of ``tenant``'s ``queue`` unless it is paused. A
materialized CTE: the locking SELECT runs exactly once, so its LIMIT holds (an IN (subquery) may
be re-evaluated and over-claim)."""

# --- renew --------------------------------------------------------------------------------------

RENEW_LEASES = """
WITH renewed AS (
    UPDATE task_runs SET
        lease_expires_at = statement_timestamp() + make_interval(secs => %(lease_ttl)s)
    FROM unnest(%(ids)s::uuid[]) AS mine(id)
    WHERE task_runs.id = mine.id AND task_runs.status = 'running'
        AND task_runs.worker_id = %(worker_id)s
    RETURNING task_runs.id, task_runs.task_id
)
SELECT renewed.id, tasks.cancel_requested_at IS NOT NULL
FROM renewed JOIN tasks ON tasks.id = renewed.task_id
"""
"""Extend this worker's leases of ``ids`` and say which of them were asked to cancel."""

# --- finish -------------------------------------------------------------------------------------

_FINISH_RUNS = """
WITH v AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(CAST(%(batch)s AS jsonb)) AS v(
        id uuid, token text, status text, result_json text, error_type text,
        error_message text, error_traceback text, reason text, delay float8,
        next_run_id uuid, task_status text, failure_reason text, start_delay float8)
),
done AS (
    UPDATE task_runs AS r SET
        status = v.status,
        started_at = r.started_at + make_interval(secs => coalesce(v.start_delay, 0)),
        finished_at = statement_timestamp(),
        result = CAST(v.result_json AS jsonb),
        error_type = v.error_type,
        error_message = v.error_message,
        error_traceback = v.error_traceback,
        outcome_reason = v.reason,
        next_retry_at = CASE WHEN v.delay IS NULL THEN NULL
            ELSE statement_timestamp() + make_interval(secs => v.delay) END,
        lease_expires_at = NULL
    FROM v
    WHERE r.id = v.id AND r.status = 'running' AND r.lease_token = v.token
    RETURNING r.id, r.task_id, r.attempt, r.tenant, r.queue_name
),
task_rows AS (
    UPDATE tasks AS t SET
        status = v.task_status,
        failure_reason = v.failure_reason,
        finished_at = CASE WHEN v.task_status = 'retrying' THEN NULL
            ELSE statement_timestamp() END,
        retry_count = t.retry_count + CASE WHEN v.task_status = 'retrying' THEN 1 ELSE 0 END,
        updated_at = statement_timestamp()
    FROM done JOIN v ON v.id = done.id
    WHERE t.id = done.task_id
),
next_runs AS (
    INSERT INTO task_runs (id, task_id, tenant, attempt, status, queue_name, available_at)
    SELECT v.next_run_id, done.task_id, done.tenant, done.attempt + 1, 'queued',
        done.queue_name, statement_timestamp() + make_interval(secs => coalesce(v.delay, 0))
    FROM done JOIN v ON v.id = done.id
    WHERE v.next_run_id IS NOT NULL
    RETURNING id, tenant, queue_name, available_at
){outbox}
SELECT done.id, next_runs.id, next_runs.available_at, next_runs.tenant
FROM done JOIN v ON v.id = done.id LEFT JOIN next_runs ON next_runs.id = v.next_run_id
"""
_FINISH_OUTBOX = """,
outbox_rows AS (
    INSERT INTO outbox (run_id, tenant, queue_name, available_at)
    SELECT id, tenant, queue_name, available_at FROM next_runs
)"""


@cache
def finish_runs(*, outbox: bool) -> str:
    """Write the JSON ``batch`` of outcomes, each fenced by (id, status 'running', lease
    token), with the task status the batch carries (see :func:`taskrt.store.rules.task_outcome`)
    and the next run of each retry (and its outbox row); returns (run id, next run id, next run
    due time, next run tenant) per run that won."""
    return _FINISH_RUNS.format(outbox=_FINISH_OUTBOX if outbox else "")


# --- small statements ---------------------------------------------------------------------------

RELAX_COMMIT = "SET LOCAL synchronous_commit = off"
"""Let this transaction commit without waiting for the WAL flush."""
