"""Reading the store from tests, with plain SQL."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import sqlalchemy as sa

from taskrt.db.engine import create_engine


class Db:
    """A small read helper over a test database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def rows(self, sql: str, **params: Any) -> list[sa.Row[Any]]:
        """Run ``sql`` and return all rows."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        """Run ``sql`` and return the single value."""
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def task_statuses(self) -> Counter[str]:
        """How many tasks are in each status."""
        return Counter(
            {
                row[0]: row[1]
                for row in self.rows("SELECT status, count(*) FROM tasks GROUP BY status")
            }
        )

    def runs(self, task_id: uuid.UUID | str) -> list[sa.Row[Any]]:
        """The runs of a task, by attempt."""
        return self.rows(
            "SELECT * FROM task_runs WHERE task_id = :t ORDER BY attempt",
            t=uuid.UUID(str(task_id)),
        )

    def succeeded_runs_per_task(self) -> Counter[int]:
        """Histogram: number of tasks having N succeeded runs."""
        rows = self.rows(
            "SELECT t.id, count(r.id) FILTER (WHERE r.status = 'succeeded') "
            "FROM tasks t LEFT JOIN task_runs r ON r.task_id = t.id GROUP BY t.id"
        )
        return Counter(row[1] for row in rows)

    def close(self) -> None:
        """Dispose of the engine."""
        self.engine.dispose()
