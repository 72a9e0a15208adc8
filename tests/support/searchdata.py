"""Seeding tasks for the search tests: rows written straight into a real database, with the
status, times, payload, dedup key and the error types of their runs chosen by the test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from taskrt.db import models
from taskrt.ids import uuid7
from taskrt.store.search import id_floor

T0 = datetime(2026, 11, 1, tzinfo=UTC)
"""When the seeded history starts."""


def id_at(stamp: datetime) -> uuid.UUID:
    """A UUIDv7 of ``stamp``'s millisecond (random low bits)."""
    return uuid.UUID(int=id_floor(stamp).int | (uuid7().int & ((1 << 80) - 1)))


def add_task(
    engine: Engine,
    *,
    created: datetime = T0,
    name: str = "shop.ship",
    queue: str = "default",
    status: str = "queued",
    kind: str = "immediate",
    payload: Any = None,
    dedup_key: str | None = None,
    finished: datetime | None = None,
    errors: tuple[str | None, ...] = (),
) -> uuid.UUID:
    """Write one task (with a run per entry of ``errors``, whose error type it is)."""
    task_id = id_at(created)
    with engine.begin() as conn:
        conn.execute(
            models.tasks.insert().values(
                id=task_id,
                name=name,
                type=kind,
                priority=0,
                queue_name=queue,
                payload=payload,
                status=status,
                dedup_key=dedup_key,
                max_retries=3,
                retry_strategy="fixed",
                retry_params={},
                retry_count=0,
                lost_runs=0,
                created_at=created,
                updated_at=created,
                finished_at=finished,
            )
        )
        for attempt, error in enumerate(errors, start=1):
            conn.execute(
                models.task_runs.insert().values(
                    id=uuid7(),
                    task_id=task_id,
                    attempt=attempt,
                    status="failed" if error else "succeeded",
                    queue_name=queue,
                    available_at=created,
                    enqueued_at=created,
                    error_type=error,
                )
            )
    return task_id
