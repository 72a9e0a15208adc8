"""Small readers of the store and Redis shared by the lifecycle acceptance tests."""

from __future__ import annotations

import uuid
from typing import Any

import redis
import sqlalchemy as sa

from tests.support.db import Db
from tests.support.procs import wait_for


def task_row(db: Db, task_id: uuid.UUID | str) -> sa.Row[Any]:
    """The ``tasks`` row of ``task_id``."""
    (row,) = db.rows("SELECT * FROM tasks WHERE id = :t", t=uuid.UUID(str(task_id)))
    return row


def task_status(db: Db, task_id: uuid.UUID | str) -> str | None:
    """The status of ``task_id`` (None if there is no such task)."""
    return db.scalar("SELECT status FROM tasks WHERE id = :t", t=uuid.UUID(str(task_id)))


def wait_status(db: Db, task_id: uuid.UUID | str, status: str, timeout: float = 30) -> None:
    """Wait until ``task_id`` has ``status``."""
    wait_for(
        lambda: task_status(db, task_id) == status,
        timeout,
        interval=0.05,
        message=f"task {task_id} to be {status} (it is {task_status(db, task_id)})",
    )


def wait_run_running(db: Db, task_id: uuid.UUID | str, attempt: int, timeout: float = 30) -> Any:
    """Wait until run ``attempt`` of ``task_id`` is running; return its row."""

    def running() -> Any:
        rows = [r for r in db.runs(task_id) if r.attempt == attempt and r.status == "running"]
        return rows[0] if rows else None

    return wait_for(running, timeout, interval=0.05, message=f"run {attempt} of {task_id} running")


def redis_list(client: redis.Redis, key: str) -> list[str]:
    """A Redis list as text."""
    return [v.decode("utf-8", "replace") for v in client.lrange(key, 0, -1)]


def redis_zset(client: redis.Redis, key: str) -> list[str]:
    """A Redis sorted set's members as text."""
    return [v.decode("utf-8", "replace") for v in client.zrange(key, 0, -1)]
