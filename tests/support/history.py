"""Seeding history for the pruning tests: tasks in any status with their runs, finished a given
time ago, audit rows and schedule fires, written straight into a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from taskrt.db import models
from taskrt.ids import uuid7

LAST_RUN = {
    "completed": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "queued": "queued",
    "running": "running",
    "retrying": "queued",
    "pending": "queued",
}


def seed_tasks(
    engine: Engine,
    count: int,
    status: str,
    *,
    age: float = 0.0,
    runs: int = 1,
    queue: str = "default",
    name: str = "testkit.record",
    kind: str = "immediate",
    outbox: bool = False,
) -> list[uuid.UUID]:
    """Insert ``count`` tasks in ``status`` with ``runs`` runs each (the earlier ones failed),
    finished ``age`` seconds ago when the status is a finished one; returns their ids."""
    now = datetime.now(UTC)
    finished = (
        now - timedelta(seconds=age) if status in ("completed", "failed", "cancelled") else None
    )
    tasks: list[dict[str, Any]] = []
    task_runs: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any]] = []
    for n in range(count):
        task_id = uuid7()
        # each task a millisecond apart, as real ones are (identical times would let B-tree
        # deduplication make the indexes look smaller than they are)
        done = finished - timedelta(milliseconds=n) if finished else None
        tasks.append(
            {
                "id": task_id,
                "name": name,
                "type": kind,
                "priority": 0,
                "queue_name": queue,
                "payload": {"n": len(tasks)},
                "status": status,
                "max_retries": 3,
                "retry_strategy": "exponential",
                "retry_params": {},
                "retry_count": runs - 1,
                "lost_runs": 0,
                "created_at": now - timedelta(seconds=age + 60),
                "updated_at": done or now,
                "finished_at": done,
            }
        )
        for attempt in range(1, runs + 1):
            last = attempt == runs
            run_status = LAST_RUN[status] if last else "failed"
            run_id = uuid7()
            task_runs.append(
                {
                    "id": run_id,
                    "task_id": task_id,
                    "attempt": attempt,
                    "status": run_status,
                    "queue_name": queue,
                    "available_at": now - timedelta(seconds=age + 60),
                    "started_at": None
                    if run_status == "queued"
                    else now - timedelta(seconds=age + 1),
                    "finished_at": done if last else now - timedelta(seconds=age + 30),
                    "lease_expires_at": now + timedelta(hours=1)
                    if run_status == "running"
                    else None,
                    "lease_token": "t" if run_status == "running" else None,
                    "result": {"ok": True} if run_status == "succeeded" else None,
                    "error_type": "ValueError" if run_status == "failed" else None,
                    "error_message": "boom" if run_status == "failed" else None,
                }
            )
            if outbox:
                outbox_rows.append({"run_id": run_id, "queue_name": queue, "available_at": now})
    with engine.begin() as conn:
        conn.execute(sa.insert(models.tasks), tasks)
        conn.execute(sa.insert(models.task_runs), task_runs)
        if outbox_rows:
            conn.execute(sa.insert(models.outbox), outbox_rows)
    return [t["id"] for t in tasks]


def seed_audit(engine: Engine, count: int, *, age: float) -> None:
    """Insert ``count`` audit rows written ``age`` seconds ago."""
    when = datetime.now(UTC) - timedelta(seconds=age)
    rows = [
        {
            "created_at": when,
            "actor": "test:seed",
            "action": "task.create",
            "target_type": "task",
            "target_id": str(uuid.uuid4()),
            "details": {},
        }
        for _ in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(models.audit_log), rows)


def seed_schedule(engine: Engine, *, fire_ages: list[float]) -> tuple[uuid.UUID, uuid.UUID]:
    """A schedule whose template task looks finished long ago (the worst case for a pruner),
    with one fire per age in ``fire_ages``; returns (schedule id, template task id)."""
    (template,) = seed_tasks(engine, 1, "completed", age=10 * 365 * 86400, kind="scheduled")
    schedule_id = uuid7()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(models.schedules),
            {
                "id": schedule_id,
                "name": f"s-{schedule_id.hex[:8]}",
                "task_template_id": template,
                "cron_expr": "* * * * *",
                "timezone": "UTC",
                "enabled": True,
                "misfire_policy": "coalesce",
            },
        )
        if fire_ages:
            conn.execute(
                sa.insert(models.schedule_fires),
                [
                    {"schedule_id": schedule_id, "fire_at": now - timedelta(seconds=a)}
                    for a in fire_ages
                ],
            )
    return schedule_id, template


def counts(engine: Engine) -> dict[str, int]:
    """Rows in each table pruning touches."""
    tables = ("tasks", "task_runs", "outbox", "audit_log", "schedule_fires")
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def orphans(engine: Engine) -> tuple[int, int]:
    """(finished tasks without any run, runs without their task): both 0 in a consistent
    database."""
    with engine.connect() as conn:
        no_runs = conn.execute(
            sa.text(
                "SELECT count(*) FROM tasks t WHERE t.type = 'immediate' AND NOT EXISTS "
                "(SELECT 1 FROM task_runs r WHERE r.task_id = t.id)"
            )
        ).scalar_one()
        no_task = conn.execute(
            sa.text(
                "SELECT count(*) FROM task_runs r WHERE NOT EXISTS "
                "(SELECT 1 FROM tasks t WHERE t.id = r.task_id)"
            )
        ).scalar_one()
    return int(no_runs), int(no_task)


def ids(engine: Engine) -> set[str]:
    """Every task id, as strings."""
    with engine.connect() as conn:
        return {str(i) for i in conn.execute(sa.select(models.tasks.c.id)).scalars()}


def task_statuses(engine: Engine) -> dict[str, int]:
    """Tasks per status."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, count(*) FROM tasks GROUP BY status"))
        return {status: int(n) for status, n in rows}
