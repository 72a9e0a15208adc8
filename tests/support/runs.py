"""Claimed runs for unit tests that need one without a store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from taskrt.records import ClaimedRun


def claimed_run(
    name: str = "x.y",
    *,
    queue: str = "default",
    waited: timedelta = timedelta(0),
    started: bool = True,
    **fields: Any,
) -> ClaimedRun:
    """A run of task type ``name`` as a worker holds it after its claim: fresh ids, attempt 1,
    no retries spent. ``waited`` backdates its enqueue; ``started=False`` leaves ``started_at``
    unset; any other ``ClaimedRun`` field may be given."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "run_id": uuid.uuid4(),
        "task_id": uuid.uuid4(),
        "attempt": 1,
        "queue": queue,
        "lease_token": "t",
        "name": name,
        "payload": None,
        "max_retries": 1,
        "retry": "fixed",
        "retry_params": {},
        "timeout": None,
        "trace_id": None,
        "retry_count": 0,
        "lost_runs": 0,
        "enqueued_at": now - waited,
        "available_at": now - waited,
        "started_at": now if started else None,
    }
    return ClaimedRun(**{**values, **fields})
