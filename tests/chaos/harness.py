"""What a chaos test works with: its servers, its workers, the executions its handlers
recorded, and reads of its database that survive the database going away."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from taskrt.client import Client
from taskrt.settings import load_settings
from tests.chaos.servers import PostgresServer, RedisServer
from tests.support import procs
from tests.support.procs import WorkerProcess, wait_for

#: Task states after which nothing more happens to a task.
FINAL = frozenset({"completed", "failed", "cancelled"})
REDIS_PREFIX = "chaos:"


@dataclass(frozen=True)
class Execution:
    """One start of a handler, as ``testkit.record`` wrote it (the host's wall clock)."""

    at: float
    pid: int
    task_id: uuid.UUID
    run_id: uuid.UUID
    attempt: int


class Chaos:
    """One test's private servers, database, workers and execution record."""

    def __init__(
        self, postgres: PostgresServer, redis: RedisServer, database_url: str, folder: Path
    ) -> None:
        self.postgres = postgres
        self.redis = redis
        self.database_url = database_url
        self.database = database_url.rpartition("/")[2]
        self.folder = folder
        self.record_path = folder / "executions.log"
        self.record_path.touch()
        self.workers: list[WorkerProcess] = []
        self._client: Client | None = None

    # --- processes --------------------------------------------------------------------------

    def env(self, **settings: Any) -> dict[str, str]:
        """Environment of a taskrt process on this test's servers; ``settings`` become
        ``TASKRT_*`` variables (``lease_ttl=2`` is ``TASKRT_LEASE_TTL=2``). Everything not
        given keeps its default."""
        return procs.service_env(
            self.database_url,
            redis_url=self.redis.url,
            redis_prefix=REDIS_PREFIX,
            log_level="INFO",
            **settings,
        )

    def spawn(self, name: str, *args: str, **settings: Any) -> WorkerProcess:
        """Start ``taskrt worker --name NAME ARGS`` and wait until it is registered."""
        worker = WorkerProcess(
            self.env(**settings), self.folder / f"{name}.log", "--name", name, *args
        ).start()
        self.workers.append(worker)
        self.wait_registered(worker)
        return worker

    def wait_registered(self, worker: WorkerProcess, timeout: float = 30) -> uuid.UUID:
        """The ``workers`` row id of the running process ``worker``, once it registered."""
        return wait_for(  # type: ignore[no-any-return]
            lambda: self.scalar(
                "SELECT id FROM workers WHERE pid = %s AND status <> 'offline' "
                "ORDER BY started_at DESC LIMIT 1",
                worker.pid,
            ),
            timeout,
            message=f"worker pid {worker.pid} registered",
        )

    @property
    def client(self) -> Client:
        """A Python client on this test's servers (use it before breaking them: its pooled
        connections do not outlive a restart)."""
        if self._client is None:
            settings = load_settings(
                database_url=self.database_url,
                redis_url=self.redis.url,
                redis_prefix=REDIS_PREFIX,
                plugins_modules=["tests.support.testkit"],
            )
            self._client = Client(settings)
        return self._client

    def record_spec(self, **payload: Any) -> dict[str, Any]:
        """An enqueue spec for ``testkit.record`` writing to this test's execution record;
        ``delay``/``queue``/``max_retries`` go to the spec, the rest to the payload."""
        spec: dict[str, Any] = {"name": "testkit.record"}
        for option in ("delay", "queue", "max_retries", "run_at"):
            if option in payload:
                spec[option] = payload.pop(option)
        spec["payload"] = {"log": str(self.record_path), **payload}
        return spec

    def enqueue_records(self, count: int, **payload: Any) -> list[uuid.UUID]:
        """Enqueue ``count`` ``testkit.record`` tasks; return their ids."""
        results = self.client.enqueue_many([self.record_spec(**payload) for _ in range(count)])
        return [result.id for result in results]

    # --- reading ----------------------------------------------------------------------------

    def rows(self, sql: str, *params: Any, timeout: float = 30) -> list[tuple[Any, ...]]:
        """Run ``sql`` on a new connection, retrying while the server is away."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(
                    self.postgres.libpq(self.database), autocommit=True, connect_timeout=3
                ) as conn:
                    return list(conn.execute(sql, params).fetchall())
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def scalar(self, sql: str, *params: Any) -> Any:
        """The first column of the first row of ``sql`` (None if no row)."""
        rows = self.rows(sql, *params)
        return rows[0][0] if rows else None

    def statuses(self, task_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The status of each task."""
        return dict(self.rows("SELECT id, status FROM tasks WHERE id = ANY(%s)", list(task_ids)))

    def wait_final(self, task_ids: Sequence[uuid.UUID], timeout: float) -> dict[uuid.UUID, str]:
        """Wait until every task reached a final state; return the states."""

        def done() -> dict[uuid.UUID, str] | None:
            states = self.statuses(task_ids)
            if len(states) == len(task_ids) and all(s in FINAL for s in states.values()):
                return states
            return None

        def left() -> str:
            states = Counter(self.statuses(task_ids).values())
            return f"every task final (now {dict(states)})"

        try:
            return wait_for(done, timeout, interval=0.1, message="every task final")  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {left()}") from None

    def run_statuses(self, task_ids: Iterable[uuid.UUID]) -> Counter[str]:
        """How many runs of these tasks are in each status."""
        return Counter(
            row[0]
            for row in self.rows(
                "SELECT status FROM task_runs WHERE task_id = ANY(%s)",
                list(task_ids),
            )
        )

    def succeeded_runs(self, task_ids: Iterable[uuid.UUID]) -> Counter[int]:
        """Histogram: number of tasks having N succeeded runs."""
        rows = self.rows(
            "SELECT t.id, count(r.id) FILTER (WHERE r.status = 'succeeded') FROM tasks t "
            "LEFT JOIN task_runs r ON r.task_id = t.id WHERE t.id = ANY(%s) GROUP BY t.id",
            list(task_ids),
        )
        return Counter(row[1] for row in rows)

    def executions(self) -> list[Execution]:
        """Every handler start recorded so far, in the order they were written."""
        found = []
        for line in self.record_path.read_text().splitlines():
            at, pid, task_id, run_id, attempt = line.split()
            found.append(
                Execution(float(at), int(pid), uuid.UUID(task_id), uuid.UUID(run_id), int(attempt))
            )
        return found

    def executions_by_task(self) -> dict[uuid.UUID, list[Execution]]:
        """Recorded handler starts, grouped by task."""
        grouped: dict[uuid.UUID, list[Execution]] = defaultdict(list)
        for execution in self.executions():
            grouped[execution.task_id].append(execution)
        return dict(grouped)

    # --- reporting and cleanup --------------------------------------------------------------

    def log_sections(self) -> list[tuple[str, str]]:
        """Titles and texts of the logs a failure report shows (their last lines)."""
        sections = [
            ("chaos: postgres log", self.postgres.log_tail()),
            ("chaos: redis log", self.redis.log_tail()),
        ]
        for worker in self.workers:
            text = "\n".join(worker.log().splitlines()[-150:])
            sections.append((f"chaos: worker log {worker.log_path.name}", text))
        executions = self.record_path.read_text().splitlines()
        sections.append(
            (
                f"chaos: last executions of {len(executions)} (time pid task run attempt)",
                "\n".join(executions[-40:]),
            )
        )
        return sections

    def close(self) -> None:
        """Stop every worker (thawing it first), close the client."""
        for worker in self.workers:
            worker.stop(timeout=10)
        if self._client is not None:
            self._client.close()
            self._client = None
