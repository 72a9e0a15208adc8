"""Rows to records: one function per record the store hands out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from taskrt.records import (
    DEFAULT_TENANT,
    ClaimedRun,
    DispatchEntry,
    RunRecord,
    RunState,
    RunStatus,
    ScheduleRecord,
    TaskKind,
    TaskRecord,
    TaskStatus,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def dispatch_entry(
    run_id: uuid.UUID,
    queue: str,
    available_at: datetime,
    immediate: bool,
    *,
    tenant: str = DEFAULT_TENANT,
) -> DispatchEntry:
    """A dispatch entry for a run of ``tenant``'s ``queue`` due at ``available_at``
    (``immediate``: ready at once)."""
    if immediate:
        return DispatchEntry(run_id=run_id, queue=queue, tenant=tenant)
    # rounded up: a run must never become ready before its due time by the store's clock
    micros = (available_at - _EPOCH) // timedelta(microseconds=1)
    return DispatchEntry(run_id=run_id, queue=queue, due_ms=-(-micros // 1000), tenant=tenant)


def task_from_row(row: Mapping[Any, Any], runs: Sequence[RunRecord] = ()) -> TaskRecord:
    """Build a TaskRecord from a ``tasks`` row."""
    return TaskRecord(
        id=row["id"],
        name=row["name"],
        kind=TaskKind(row["type"]),
        queue=row["queue_name"],
        priority=row["priority"],
        payload=row["payload"],
        status=TaskStatus(row["status"]),
        max_retries=row["max_retries"],
        retry=row["retry_strategy"],
        retry_params=row["retry_params"] or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        dedup_key=row["dedup_key"],
        timeout=row["timeout_seconds"],
        trace_id=row["trace_id"],
        failure_reason=row["failure_reason"],
        lost_runs=row["lost_runs"],
        finished_at=row["finished_at"],
        cancel_requested_at=row["cancel_requested_at"],
        runs=tuple(runs),
        tenant=row["tenant"],
    )


def task_with_latest_run(task: TaskRecord, run: RunRecord | None) -> TaskRecord:
    """``task`` carrying ``run`` as its only (latest) run."""
    return replace(task, runs=(run,) if run else ())


def run_from_row(row: Mapping[Any, Any]) -> RunRecord:
    """Build a RunRecord from a ``task_runs`` row."""
    return RunRecord(
        id=row["id"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        status=RunStatus(row["status"]),
        queue=row["queue_name"],
        available_at=row["available_at"],
        enqueued_at=row["enqueued_at"],
        worker_id=row["worker_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=row["result"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        error_traceback=row["error_traceback"],
        outcome_reason=row["outcome_reason"],
        next_retry_at=row["next_retry_at"],
        tenant=row["tenant"],
    )


def claimed_run(row: Sequence[Any], lease_token: str) -> ClaimedRun:
    """A ClaimedRun from a claim's row: the run's id, task id, attempt, queue, enqueued_at,
    available_at, started_at, suspect flag and tenant, then its task's name, payload, max_retries,
    retry strategy and params, timeout, trace id, retry count, lost runs and
    cancel_requested_at (the order of both databases' claim statements)."""
    (
        run_id,
        task_id,
        attempt,
        queue,
        enqueued_at,
        available_at,
        started_at,
        suspect,
        tenant,
        name,
        payload,
        max_retries,
        retry,
        retry_params,
        timeout,
        trace_id,
        retry_count,
        lost_runs,
        cancel_requested_at,
    ) = row
    return ClaimedRun(
        run_id=run_id,
        task_id=task_id,
        attempt=attempt,
        queue=queue,
        lease_token=lease_token,
        name=name,
        payload=payload,
        max_retries=max_retries,
        retry=retry,
        retry_params=retry_params or {},
        timeout=timeout,
        trace_id=trace_id,
        retry_count=retry_count,
        lost_runs=lost_runs,
        enqueued_at=enqueued_at,
        available_at=available_at,
        started_at=started_at,
        cancel_requested=cancel_requested_at is not None,
        suspect=bool(suspect),
        tenant=tenant,
    )


def run_state(row: Any, lease_expired: bool) -> RunState:
    """A RunState from a row of :data:`taskrt.store.reaping.RUN_STATE_COLUMNS`."""
    return RunState(
        run_id=row.id,
        task_id=row.task_id,
        status=row.status,
        queue=row.queue_name,
        attempt=row.attempt,
        lease_token=row.lease_token,
        lease_expired=lease_expired,
        available_at=row.available_at,
        tenant=row.tenant,
    )


def schedule_from_row(row: Mapping[Any, Any]) -> ScheduleRecord:
    """Build a ScheduleRecord from a schedules row joined with its template."""
    return ScheduleRecord(
        id=row["id"],
        name=row["name"],
        cron=row["cron_expr"],
        timezone=row["timezone"],
        enabled=row["enabled"],
        misfire_policy=row["misfire_policy"],
        task_template_id=row["task_template_id"],
        task_name=row["task_name"],
        payload=row["payload"],
        queue=row["queue_name"],
        max_retries=row["max_retries"],
        retry=row["retry_strategy"],
        retry_params=row["retry_params"] or {},
        timeout=row["timeout_seconds"],
        priority=row["priority"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_triggered_at=row["last_triggered_at"],
        next_fire_at=row["next_fire_at"],
        tenant=row["tenant"],
    )
