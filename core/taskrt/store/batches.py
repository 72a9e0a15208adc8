"""Records as the rows and JSON batches the store's statements take."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from taskrt.records import RunFinish, TaskInsert, TaskKind


def dumps(value: Any) -> str | None:
    """JSON text of ``value`` for the batch statements (``None`` stays SQL NULL)."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), default=str)


def task_row(item: TaskInsert) -> dict[str, Any]:
    """The ``tasks`` row of a task to create."""
    return {
        "id": item.id,
        "tenant": item.tenant,
        "name": item.name,
        "type": item.kind.value,
        "priority": item.priority,
        "queue_name": item.queue,
        "payload": item.payload,
        "status": "queued" if item.kind == TaskKind.IMMEDIATE else "pending",
        "dedup_key": item.dedup_key,
        "max_retries": item.max_retries,
        "retry_strategy": item.retry,
        "retry_params": item.retry_params,
        "timeout_seconds": item.timeout,
        "retry_count": 0,
        "lost_runs": 0,
        "trace_id": item.trace_id,
    }


def insert_batch(items: Sequence[TaskInsert]) -> str | None:
    """The JSON document PostgreSQL's insert statement unpacks: each task's row with its first
    run's id and due time."""
    return dumps(
        [
            {
                **task_row(item),
                "id": str(item.id),
                "run_id": str(item.run_id),
                "due_at": item.run_at.isoformat() if item.run_at else None,
                "delay_s": float(item.delay),
            }
            for item in items
        ]
    )


def finish_row(finish: RunFinish, run_id: str) -> dict[str, Any]:
    """One outcome as a row of the finish statements' JSON batch (both databases; ``run_id``
    in the text form the database stores)."""
    return {
        "id": run_id,
        "token": finish.run.lease_token,
        "status": finish.status,
        "result_json": dumps(finish.result),
        "error_type": finish.error_type,
        "error_message": finish.error_message,
        "error_traceback": finish.error_traceback,
        "reason": finish.reason,
        "delay": finish.retry_delay,
        "start_delay": finish.start_delay,
    }
