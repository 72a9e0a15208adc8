"""History at scale (issue 15): pruning, and drain, pickup and search, on millions of tasks.

One fresh PostgreSQL database (Redis backend) is filled with ``tasks`` finished tasks, each with
one run, written by ``INSERT ... SELECT generate_series`` in chunks: ids are UUIDv7 of each
task's creation millisecond (increasing with it, as taskrt's are), payloads are 200-400 bytes
of JSON with a ``customer_id`` and nested objects, a tenth of the tasks failed (their run has an
error type, a message and a 1-2 KB traceback), the others succeeded with a small result. The
oldest ``prune`` tasks finished 32 to 60 days ago, the others between 28 days and an hour ago.
Then ``VACUUM ANALYZE`` (the state autovacuum leaves old history in).

In this order, on that one database:

1. **sizing**: ``pg_total_relation_size`` (heap, TOAST and indexes) of ``tasks`` and
   ``task_runs`` divided by their rows;
2. **search at full size**: every filter of :data:`FILTERS` (as ``GET /api/v1/tasks`` and
   ``taskrt task list`` offer them), ``search_statement(filter, limit=51)`` (the API's first
   page) executed and fetched ``repeats`` times after one untimed run, plus the second page by
   the keyset cursor when the first was full; p50, p95 and max in ms;
3. **prune**: ``Pruner(store, settings).run(PruneRequest(older_than=30 days))`` (the real code
   path, default batch size) removes the ``prune`` oldest tasks with their runs; its time and
   rate, then sizing again, then ``VACUUM ANALYZE`` (timed, not part of the prune);
4. **search after the prune**, as in 2;
5. **automatic pruning** (the primary figure, issue 15's target): rounds of a
   ``taskrt worker -c 8`` without pruning (``TASKRT_RETENTION_INTERVAL=0``, **baseline**) and
   then one whose own automatic pruning works off a real backlog (:data:`AUTO_PRUNING`: interval
   1 s, completed/failed/cancelled kept 7 days, so the tasks that finished 7 to 28 days ago are
   due; default duty and batch size), ABAB in the full run (``rounds``) to cancel machine-load
   drift. Each worker drains ``drain_tasks`` no-op tasks and takes ``pickup_tasks`` pickup tasks
   at ``pickup_rate`` per second (:mod:`bench.pickup`). For every measured window: the 1-minute
   load average before and after (the machine may be shared), and the tasks deleted meanwhile
   (``pg_stat_user_tables.n_tup_del``) with their rate; after each worker, the seeded tasks left
   and how many of them are still due (a pruning window only counts when its backlog never ran
   out: some still due afterwards). The ratios are of the medians;
6. **manual prune** (secondary, informational, no target): a worker without pruning drains and
   takes pickup tasks while a ``taskrt prune --older-than 7d`` subprocess (an operator's explicit
   action, flat out: no pauses between its batches) works on what is still due; once its first
   deletes show, the drain and pickup run; whether it was running from the first to the last task
   of each (``overlap_*``) and how many tasks it deleted meanwhile are recorded; then it is
   stopped with SIGTERM (each batch is one transaction, so that is safe).

Run ``python -m bench.history [--quick]`` alone, or ``python -m bench --only history``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import sqlalchemy as sa

from bench import pickup
from bench.drain import fill
from bench.env import (
    QUEUE,
    REPO_ROOT,
    TASKRT,
    BenchTarget,
    cpu_snapshot,
    cpu_used,
    postgres_target,
    worker,
)
from taskrt.client import Client
from taskrt.ids import uuid7
from taskrt.prune import Pruner, PruneRequest
from taskrt.store.search import PayloadMatch, TaskSearch, search_statement

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
PRUNE_AGE_DAYS = 30
"""The timed prune's ``older_than``: the old slice finished 32 to 60 days ago."""
CONCURRENT_AGE_DAYS = 7
"""The concurrent prunes' age (the default retention of completed tasks): what finished 7 to 28
days ago is due, about three quarters of what the timed prune leaves."""
AUTO_PRUNING: dict[str, object] = {
    "retention_interval": 1,
    "retention_completed": f"{CONCURRENT_AGE_DAYS}d",
    "retention_failed": f"{CONCURRENT_AGE_DAYS}d",
    "retention_cancelled": f"{CONCURRENT_AGE_DAYS}d",
}
"""The pruning worker's settings (default duty and batch size)."""
NO_PRUNING: dict[str, object] = {"retention_interval": 0}
"""The baseline worker's settings."""
PAGE = 51
"""The API's first page: ``limit`` 50 plus one to know whether there is a next page."""
POLL = 0.05
ERROR_TYPES = ("SmtpError", "ValueError", "TimeoutError", "KeyError")


@dataclass(frozen=True)
class Sizes:
    """How big the history measurement is."""

    tasks: int = 2_000_000
    prune: int = 1_000_000
    chunk: int = 250_000
    drain_tasks: int = 20_000
    pickup_tasks: int = 2000
    pickup_rate: float = 200.0
    search_repeats: int = 50
    rounds: int = 2
    """Baseline-then-pruning rounds of the automatic-pruning figure (ABAB)."""

    @classmethod
    def quick(cls) -> Sizes:
        """The smoke run's sizes (a few seconds of seeding)."""
        return cls(
            tasks=40_000,
            prune=10_000,
            chunk=10_000,
            drain_tasks=300,
            pickup_tasks=200,
            search_repeats=5,
            rounds=1,
        )


def _say(text: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}]   history: {text}", file=sys.stderr, flush=True)


# --- the seeded history ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the seeded tasks sit in time: task ``g`` (1..tasks) finished at ``finished_ms(g)``;
    the first ``prune`` are the old slice."""

    tasks: int
    prune: int
    now_ms: int

    @property
    def old_base(self) -> int:
        return self.now_ms - 60 * DAY_MS

    @property
    def old_step(self) -> int:
        return (28 * DAY_MS) // max(self.prune, 1)

    @property
    def new_base(self) -> int:
        return self.now_ms - 28 * DAY_MS

    @property
    def new_step(self) -> int:
        return (28 * DAY_MS - HOUR_MS) // max(self.tasks - self.prune, 1)

    def finished_ms(self, g: int) -> int:
        """When task ``g`` finished (Unix ms), as the seeding SQL computes it."""
        if g <= self.prune:
            return self.old_base + (g - 1) * self.old_step
        return self.new_base + (g - self.prune - 1) * self.new_step

    def recent(self, g_from_end: int, modulo: int, remainder: int) -> int:
        """The first ``g`` at least ``g_from_end`` before the last with ``g % modulo ==
        remainder`` (a recent task, which no prune of this benchmark removes)."""
        g = self.tasks - g_from_end
        while g % modulo != remainder:
            g -= 1
        return g

    def params(self) -> dict[str, int]:
        return {
            "prune": self.prune,
            "old_base": self.old_base,
            "old_step": self.old_step,
            "new_base": self.new_base,
            "new_step": self.new_step,
        }


# One chunk of tasks g in [lo, hi]: ``made`` is the creation millisecond (its UUIDv7), ``fin``
# the finish. Every 10th task failed; queues, types, customers and error types are spread so
# that the filters of FILTERS each match a small part of the table.
_CHUNK = """
    WITH s AS (
        SELECT g, fin, fin - 50 - (g % 20) * 100 AS made
        FROM (
            SELECT g, CASE
                WHEN g <= :prune
                THEN CAST(:old_base AS bigint) + (g - 1) * CAST(:old_step AS bigint)
                ELSE CAST(:new_base AS bigint) + (g - :prune - 1) * CAST(:new_step AS bigint)
            END AS fin
            FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) AS g
        ) AS times
    )
"""

SEED_TASKS = (
    _CHUNK
    + """
    INSERT INTO tasks (id, name, type, priority, queue_name, payload, status, dedup_key,
        max_retries, retry_strategy, retry_params, timeout_seconds, retry_count, lost_runs,
        failure_reason, trace_id, created_at, updated_at, finished_at)
    SELECT
        (lpad(to_hex(made), 12, '0') || '7000' || '8000' || lpad(to_hex(g), 12, '0'))::uuid,
        'job.' || (g % 100), 'immediate', 0, 'q' || ((g / 7) % 10),
        jsonb_build_object(
            'customer_id', g % 50000,
            'order', jsonb_build_object(
                'id', 'ord-' || g,
                'lines', 1 + g % 9,
                'total_cents', (g::bigint * 7919) % 100000,
                'currency', (ARRAY['EUR', 'USD', 'GBP'])[1 + g % 3],
                'sku', 'SKU-' || lpad(((g * 31) % 100000)::text, 6, '0')),
            'region', jsonb_build_object('code', 'r' || (g % 50), 'zone', 'z' || (g % 7)),
            'email', 'customer' || (g % 50000) || '@example.com',
            'source', (ARRAY['api', 'web', 'batch', 'cron'])[1 + g % 4],
            'note', substr(md5(g::text) || md5((g + 1)::text), 1, 8 + (g % 7) * 8),
            'requested_at', made),
        CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END,
        CASE WHEN g % 4 = 1 THEN 'order-' || g END,
        3, 'exponential', '{"base": 2.0, "max_delay": 300}'::jsonb, 60, 0, 0,
        CASE WHEN g % 10 = 0 THEN 'non_retryable' END,
        md5(g::text),
        to_timestamp(made / 1000.0), to_timestamp(fin / 1000.0), to_timestamp(fin / 1000.0)
    FROM s
    """
)

_FRAME = (
    "'  File \"/srv/app/.venv/lib/python3.11/site-packages/shop/orders/service.py\", line ' "
    "|| (40 + g % 300) || ', in handle_order' || chr(10) "
    "|| '    receipt = gateway.charge(order, amount_cents=order.total_cents)' || chr(10)"
)
_TRACEBACK = (
    "'Traceback (most recent call last):' || chr(10) "
    '|| \'  File "/srv/app/.venv/lib/python3.11/site-packages/taskrt/worker/execute.py", '
    "line 212, in run_handler' || chr(10) || '    result = handler(payload)' || chr(10) "
    f"|| repeat({_FRAME}, 5 + (g / 10) % 6) "
    "|| (ARRAY['SmtpError', 'ValueError', 'TimeoutError', 'KeyError'])[1 + (g / 10) % 4] "
    "|| ': could not deliver order ord-' || g || ' to customer' || (g % 50000) "
    "|| '@example.com (' || md5(g::text) || ')'"
)

SEED_RUNS = (  # constant text: the traceback expression is SQL of this module
    _CHUNK
    + f"""
    INSERT INTO task_runs (id, task_id, attempt, status, queue_name, available_at, enqueued_at,
        worker_id, lease_token, started_at, finished_at, result, error_type, error_message,
        error_traceback, suspect)
    SELECT
        (lpad(to_hex(made + 1), 12, '0') || '7000' || '9000' || lpad(to_hex(g), 12, '0'))::uuid,
        (lpad(to_hex(made), 12, '0') || '7000' || '8000' || lpad(to_hex(g), 12, '0'))::uuid,
        1,
        CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
        'q' || ((g / 7) % 10),
        to_timestamp(made / 1000.0), to_timestamp(made / 1000.0),
        ('00000000-0000-4000-8000-' || lpad(to_hex(g % 8), 12, '0'))::uuid,
        md5((g * 3)::text),
        to_timestamp((made + 20) / 1000.0), to_timestamp(fin / 1000.0),
        CASE WHEN g % 10 <> 0 THEN jsonb_build_object(
            'ok', true, 'receipt', 'rcpt-' || g, 'charged_cents', (g::bigint * 7919) % 100000) END,
        CASE WHEN g % 10 = 0 THEN
            (ARRAY['SmtpError', 'ValueError', 'TimeoutError', 'KeyError'])[1 + (g / 10) % 4]
        END,
        CASE WHEN g % 10 = 0 THEN 'could not deliver order ord-' || g END,
        CASE WHEN g % 10 = 0 THEN {_TRACEBACK} END,
        false
    FROM s
    """  # noqa: S608
)


def seed(engine: sa.Engine, layout: Layout, chunk: int) -> dict[str, Any]:
    """Write the history, chunk by chunk (tasks, then their runs, one transaction per chunk),
    then VACUUM ANALYZE; seconds and the average payload and traceback sizes."""
    started = time.perf_counter()
    for lo in range(1, layout.tasks + 1, chunk):
        hi = min(lo + chunk - 1, layout.tasks)
        values = {**layout.params(), "lo": lo, "hi": hi}
        with engine.begin() as conn:
            conn.execute(sa.text(SEED_TASKS), values)
            conn.execute(sa.text(SEED_RUNS), values)
        _say(f"seeded {hi:,} of {layout.tasks:,} tasks ({time.perf_counter() - started:.0f} s)")
    inserted = time.perf_counter() - started
    vacuum = _vacuum(engine)
    with engine.connect() as conn:
        payload, traceback_chars = conn.execute(
            sa.text(
                "SELECT (SELECT avg(length(payload::text)) FROM tasks), "
                "(SELECT avg(length(error_traceback)) FROM task_runs "
                "WHERE error_traceback IS NOT NULL)"
            )
        ).one()
    return {
        "insert_seconds": inserted,
        "vacuum_analyze_seconds": vacuum,
        "payload_avg_chars": float(payload),
        "traceback_avg_chars": float(traceback_chars),
    }


def _vacuum(engine: sa.Engine) -> float:
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE tasks, task_runs"))
    return time.perf_counter() - started


def sizing(engine: sa.Engine) -> dict[str, Any]:
    """Rows and bytes of ``tasks`` and ``task_runs``: heap with TOAST, indexes (also each
    index), total, and the total per row."""
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in ("tasks", "task_runs"):
            rows = conn.execute(
                sa.select(sa.func.count()).select_from(sa.table(table))
            ).scalar_one()
            heap, indexes, total = conn.execute(
                sa.text(
                    "SELECT pg_table_size(CAST(:t AS regclass)), "
                    "pg_indexes_size(CAST(:t AS regclass)), "
                    "pg_total_relation_size(CAST(:t AS regclass))"
                ),
                {"t": table},
            ).one()
            by_index = conn.execute(
                sa.text(
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                    "FROM pg_index WHERE indrelid = CAST(:t AS regclass) ORDER BY 1"
                ),
                {"t": table},
            ).all()
            found[table] = {
                "rows": int(rows),
                "heap_bytes": int(heap),
                "index_bytes": int(indexes),
                "total_bytes": int(total),
                "bytes_per_row": total / rows if rows else None,
                "heap_bytes_per_row": heap / rows if rows else None,
                "index_bytes_per_row": indexes / rows if rows else None,
                "index_bytes_by_name": {name: int(size) for name, size in by_index},
            }
    return found


# --- search -------------------------------------------------------------------------------------


def filters(layout: Layout) -> dict[str, TaskSearch]:
    """The search filters, one per filter (and a few combinations) the API offers, with values
    that match recent tasks of the seeded history (so every one survives every prune here).
    The same list as tests/integration/test_task_search.py's FILTERS."""

    def stamp(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    two_days_ago = layout.now_ms - 2 * DAY_MS
    three_days_ago = layout.now_ms - 3 * DAY_MS
    dedup = layout.recent(1234, 4, 1)
    customer = layout.recent(777, 1, 0) % 50000
    combined = layout.recent(500, 100, 70)  # failed, type job.70, and its customer
    return {
        "none": TaskSearch(),
        "all kinds": TaskSearch(kind=None),
        "status": TaskSearch(status="failed"),
        "queue": TaskSearch(queue="q3"),
        "queue and status": TaskSearch(queue="q0", status="failed"),
        "type": TaskSearch(name="job.7"),
        "created range": TaskSearch(
            created_after=stamp(two_days_ago), created_before=stamp(two_days_ago + HOUR_MS)
        ),
        "finished range": TaskSearch(
            finished_after=stamp(three_days_ago),
            finished_before=stamp(three_days_ago + HOUR_MS),
        ),
        "error type": TaskSearch(error_type="SmtpError"),
        "dedup key": TaskSearch(dedup_key=f"order-{dedup}"),
        "payload": TaskSearch(payload=(PayloadMatch(("customer_id",), customer),)),
        "payload nested": TaskSearch(payload=(PayloadMatch(("region", "code"), "r7"),)),
        "status and type and payload": TaskSearch(
            status="failed",
            name="job.70",
            payload=(PayloadMatch(("customer_id",), combined % 50000),),
        ),
        "error type and queue": TaskSearch(error_type="SmtpError", queue="q0"),
    }


def _stats(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": pickup.percentile(times, 0.95),
        "max_ms": max(times),
    }


def search(engine: sa.Engine, layout: Layout, repeats: int) -> dict[str, Any]:
    """p50/p95/max (ms) of each filter's first page, and of its second page when the first
    was full; executed and fetched on one pooled connection, after one untimed run."""
    results: dict[str, Any] = {}
    with engine.connect() as conn:
        for label, wanted in filters(layout).items():
            first: list[float] = []
            second: list[float] = []
            rows: Sequence[Any] = []
            for attempt in range(repeats + 1):
                started = time.perf_counter()
                rows = conn.execute(search_statement(wanted, limit=PAGE)).all()
                elapsed = (time.perf_counter() - started) * 1000
                if attempt:
                    first.append(elapsed)
                if len(rows) == PAGE:  # the API's next cursor is the 50th row's id
                    cursor = rows[PAGE - 2].id
                    started = time.perf_counter()
                    conn.execute(search_statement(wanted, limit=PAGE, before=cursor)).all()
                    elapsed = (time.perf_counter() - started) * 1000
                    if attempt:
                        second.append(elapsed)
            results[label] = {
                "rows": len(rows),
                **_stats(first),
                "page2": _stats(second) if second else None,
            }
    worst = max(results, key=lambda k: results[k]["p95_ms"])
    return {
        "repeats": repeats,
        "filters": results,
        "max_p95_ms": results[worst]["p95_ms"],
        "max_p95_filter": worst,
        "max_p95_page2_ms": max(
            (r["page2"]["p95_ms"] for r in results.values() if r["page2"]), default=None
        ),
    }


# --- prune, drain, pickup ------------------------------------------------------------------------


def prune(client: Client, target: BenchTarget, older_than_days: int) -> dict[str, Any]:
    """Prune through the real code path (``Pruner.run``, default batch size); time and rates."""
    pruner = Pruner(client.service.store, target.settings())
    started = time.perf_counter()
    counts = pruner.run(PruneRequest(older_than=older_than_days * 86400.0))
    seconds = time.perf_counter() - started
    return {
        "older_than_days": older_than_days,
        "batch_size": pruner.batch_size,
        "deleted": counts.to_dict(),
        "seconds": seconds,
        "tasks_per_s": counts.tasks / seconds,
        "rows_per_s": (counts.tasks + counts.runs) / seconds,
    }


def _completed_since(engine: sa.Engine, floor: uuid.UUID) -> int:
    """Completed tasks of the benchmark queue made after ``floor`` (an index range scan of
    ``ix_tasks_queue_name_status_id``; the seeded history is on other queues)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM tasks "
                    "WHERE queue_name = :queue AND status = 'completed' AND id > :floor"
                ),
                {"queue": QUEUE, "floor": floor},
            ).scalar_one()
        )


def drain(
    client: Client,
    proc: subprocess.Popen[bytes],
    tasks: int,
    *,
    before_resume: Callable[[], None] | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Drain ``tasks`` no-ops with the running worker ``proc``, as :mod:`bench.drain` does
    (pause, fill, resume, poll every 50 ms), counting only this drain's tasks."""
    service = client.service
    engine = service.store.engine
    service.pause(QUEUE)
    floor = uuid7()  # the fill's ids (made later in this process) are all above it
    fill(client, tasks)
    if before_resume is not None:
        before_resume()
    cpu_before = cpu_snapshot([proc.pid])
    started = time.perf_counter()
    service.resume(QUEUE)
    while True:
        time.sleep(POLL)
        done = _completed_since(engine, floor)
        elapsed = time.perf_counter() - started
        if done >= tasks:
            cpu = cpu_used(cpu_before, cpu_snapshot([proc.pid]))
            break
        if elapsed > timeout:
            raise RuntimeError(f"the drain stalled at {done} of {tasks} tasks")
        if proc.poll() is not None:
            raise RuntimeError("the worker died during the drain")
    return {
        "tasks": tasks,
        "seconds": elapsed,
        "tasks_per_s": tasks / elapsed,
        "cpu_us_per_task": {group: used / tasks * 1e6 for group, used in sorted(cpu.items())},
    }


def _tasks_deleted(engine: sa.Engine) -> int:
    """Rows deleted from ``tasks`` so far by the statistics collector (a backend reports its
    counts at most once a second, so this lags by up to about a second)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return int(
            conn.execute(
                sa.text("SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'tasks'")
            ).scalar_one()
        )


class ConcurrentPrune:
    """A ``taskrt prune --older-than Nd`` subprocess on the target, and when it was running."""

    def __init__(self, target: BenchTarget, engine: sa.Engine, older_than_days: int) -> None:
        self.target = target
        self.engine = engine
        self.older_than_days = older_than_days
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.ended: float | None = None
        self.deleted_at_start = 0
        self.facts: dict[str, Any] = {"older_than_days": older_than_days}
        self._log: IO[bytes] | None = None
        self._open: dict[str, tuple[float, int, bool]] = {}

    def start(self, wait: float = 30.0) -> None:
        """Start it and return once its first deletes are seen (or ``wait`` passes)."""
        self.deleted_at_start = _tasks_deleted(self.engine)
        self._log = tempfile.TemporaryFile(prefix="taskrt-bench-prune-")  # noqa: SIM115 (stop)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [TASKRT, "prune", "--older-than", f"{self.older_than_days}d", "--json"],
            env=self.target.env(),
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        proc = self.proc
        threading.Thread(target=self._watch, args=(proc,), daemon=True).start()
        deadline = time.monotonic() + wait
        while _tasks_deleted(self.engine) == self.deleted_at_start:
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.facts["first_deletes_seen_after_s"] = time.perf_counter() - self.started

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self.ended = time.perf_counter()

    def running(self) -> bool:
        """Whether the subprocess is still running."""
        return self.proc is not None and self.proc.poll() is None

    def begin(self, name: str) -> None:
        """A measured step (``drain``, ``pickup``) starts now."""
        self._open[name] = (time.perf_counter(), _tasks_deleted(self.engine), self.running())

    def end(self, name: str) -> None:
        """The step ``name`` ended: was the prune running from its start to its end, and how
        many tasks did it delete meanwhile."""
        began, deleted, alive_at_start = self._open.pop(name)
        seconds = time.perf_counter() - began
        alive_at_end = self.running()
        removed = _tasks_deleted(self.engine) - deleted
        self.facts[name] = {
            "running_at_start": alive_at_start,
            "running_at_end": alive_at_end,
            "overlap_whole": alive_at_start and alive_at_end,
            "seconds": seconds,
            "tasks_deleted": removed,
            "tasks_deleted_per_s": removed / seconds if seconds else None,
        }

    def stop(self) -> dict[str, Any]:
        """SIGTERM it (if it has not finished), wait, and return the facts."""
        proc = self.proc
        if proc is not None:
            stopped = proc.poll() is None
            if stopped:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.facts["stopped_by_benchmark"] = stopped
            self.facts["exit_code"] = proc.returncode
        ended = self.ended if self.ended is not None else time.perf_counter()
        self.facts["ran_seconds"] = ended - self.started
        self.facts["tasks_deleted_total"] = _tasks_deleted(self.engine) - self.deleted_at_start
        if self._log is not None:
            self._log.seek(0)
            self.facts["output_tail"] = self._log.read().decode("utf-8", "replace")[-500:]
            self._log.close()
        return self.facts


def _load() -> float:
    """The 1-minute load average (the machine may be shared with other work)."""
    return os.getloadavg()[0]


class Window:
    """One measured window (a drain or a pickup): seconds, the load average at its start and
    end, and the tasks deleted from ``tasks`` meanwhile (``pg_stat_user_tables``)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.began = 0.0
        self.deleted = 0
        self.load = 0.0

    def begin(self) -> None:
        self.load = _load()
        self.deleted = _tasks_deleted(self.engine)
        self.began = time.perf_counter()

    def end(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.began
        load = _load()
        # a backend reports its deletes at most once a second: both ends lag alike
        removed = _tasks_deleted(self.engine) - self.deleted
        return {
            "seconds": seconds,
            "load_before": self.load,
            "load_after": load,
            "tasks_deleted": removed,
            "tasks_deleted_per_s": removed / seconds if seconds else None,
        }


def _seeded_left(engine: sa.Engine) -> dict[str, int]:
    """Seeded tasks left (every queue but the benchmark's), and how many of them are due for
    the concurrent prunes (finished more than CONCURRENT_AGE_DAYS ago)."""
    with engine.connect() as conn:
        left, due = conn.execute(
            sa.text(
                "SELECT count(*), count(*) FILTER (WHERE finished_at < now() - make_interval("
                "days => :days)) FROM tasks WHERE queue_name <> :queue"
            ),
            {"days": CONCURRENT_AGE_DAYS, "queue": QUEUE},
        ).one()
    return {"left": int(left), "due": int(due)}


def _wait_new_worker(client: Client, known: set[uuid.UUID], timeout: float = 30.0) -> None:
    """Wait until a worker not in ``known`` is online."""
    deadline = time.monotonic() + timeout
    while not {w.id for w in client.service.workers(include_offline=False)} - known:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the new worker did not register within {timeout:.0f} s")
        time.sleep(0.1)


def _wait_deletes(engine: sa.Engine, timeout: float = 30.0) -> float:
    """Seconds until ``tasks`` deletes show in the statistics (the pruner has started)."""
    started = time.perf_counter()
    first = _tasks_deleted(engine)
    while _tasks_deleted(engine) == first:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"the worker's automatic pruning deleted nothing in {timeout:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - started


def worker_phase(
    client: Client, target: BenchTarget, sizes: Sizes, *, pruning: bool
) -> dict[str, Any]:
    """One worker (automatic pruning on or off): drain, then pickup, each a measured window."""
    engine = client.service.store.engine
    settings = AUTO_PRUNING if pruning else NO_PRUNING
    known = {w.id for w in client.service.workers(include_offline=True)}
    found: dict[str, Any] = {"pruning": pruning, "seeded_before": _seeded_left(engine)}
    with worker(target, "-c", "8", settle=0, **settings) as proc:
        _wait_new_worker(client, known)
        pickup.warm_up(client)
        if pruning:
            found["first_deletes_after_s"] = _wait_deletes(engine)
        window = Window(engine)
        found["drain"] = drain(client, proc, sizes.drain_tasks, before_resume=window.begin)
        found["drain"]["window"] = window.end()
        window.begin()
        found["pickup"] = pickup.send(client, sizes.pickup_tasks, sizes.pickup_rate)
        found["pickup"]["window"] = window.end()
    found["seeded_after"] = after = _seeded_left(engine)
    deleted = (
        found["drain"]["window"]["tasks_deleted"],
        found["pickup"]["window"]["tasks_deleted"],
    )
    # valid: a pruning window saw deletes and its backlog was never worked off; a baseline none
    found["valid"] = all(deleted) and after["due"] > 0 if pruning else not any(deleted)
    return found


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def auto_pruning(client: Client, target: BenchTarget, sizes: Sizes, out: dict[str, Any]) -> None:
    """The primary figure: ``rounds`` of baseline then pruning workers; fills ``out``."""
    out["settings"] = {"pruning": AUTO_PRUNING, "baseline": NO_PRUNING}
    phases: list[dict[str, Any]] = out.setdefault("phases", [])
    for number in range(1, sizes.rounds + 1):
        for pruning in (False, True):
            found = worker_phase(client, target, sizes, pruning=pruning)
            found["round"] = number
            phases.append(found)
            _say(
                f"round {number} {'pruning' if pruning else 'baseline'}: drain "
                f"{found['drain']['tasks_per_s']:,.0f} tasks/s, pickup p99 "
                f"{found['pickup']['p99_ms']:.1f} ms, deleted "
                f"{found['drain']['window']['tasks_deleted']:,} + "
                f"{found['pickup']['window']['tasks_deleted']:,}, due left "
                f"{found['seeded_after']['due']:,}, load "
                f"{found['drain']['window']['load_before']:.2f}"
            )

    def median(pruning: bool, *path: str) -> float | None:
        values: list[Any] = [p for p in phases if p["pruning"] is pruning]
        for key in path:
            values = [v[key] for v in values]
        return float(statistics.median(values)) if values else None

    drain_base = median(False, "drain", "tasks_per_s")
    drain_prune = median(True, "drain", "tasks_per_s")
    pick_base = median(False, "pickup", "p99_ms")
    pick_prune = median(True, "pickup", "p99_ms")
    out["drain"] = {
        "baseline": [p["drain"]["tasks_per_s"] for p in phases if not p["pruning"]],
        "pruning": [p["drain"]["tasks_per_s"] for p in phases if p["pruning"]],
        "baseline_median": drain_base,
        "pruning_median": drain_prune,
        "ratio": _ratio(drain_prune, drain_base),
        "prune_rate_median": median(True, "drain", "window", "tasks_deleted_per_s"),
    }
    out["pickup"] = {
        "baseline_p99": [p["pickup"]["p99_ms"] for p in phases if not p["pruning"]],
        "pruning_p99": [p["pickup"]["p99_ms"] for p in phases if p["pruning"]],
        "baseline_p99_median": pick_base,
        "pruning_p99_median": pick_prune,
        "p99_ratio": _ratio(pick_prune, pick_base),
        "baseline_p50_median": median(False, "pickup", "p50_ms"),
        "pruning_p50_median": median(True, "pickup", "p50_ms"),
        "prune_rate_median": median(True, "pickup", "window", "tasks_deleted_per_s"),
    }
    out["valid"] = all(p["valid"] for p in phases)


def manual_prune(
    client: Client, target: BenchTarget, sizes: Sizes, out: dict[str, Any], baseline: float | None
) -> None:
    """The secondary figure: drain and pickup while ``taskrt prune`` runs flat out."""
    engine = client.service.store.engine
    known = {w.id for w in client.service.workers(include_offline=True)}
    out["seeded_before"] = _seeded_left(engine)
    with worker(target, "-c", "8", settle=0, **NO_PRUNING) as proc:
        _wait_new_worker(client, known)
        pickup.warm_up(client)
        pruning = ConcurrentPrune(target, engine, CONCURRENT_AGE_DAYS)
        window = Window(engine)

        def start_pruning() -> None:
            pruning.start()
            pruning.begin("drain")
            window.begin()

        try:
            out["drain"] = drain(client, proc, sizes.drain_tasks, before_resume=start_pruning)
            pruning.end("drain")
            out["drain"]["window"] = window.end()
            pruning.begin("pickup")
            window.begin()
            out["pickup"] = pickup.send(client, sizes.pickup_tasks, sizes.pickup_rate)
            pruning.end("pickup")
            out["pickup"]["window"] = window.end()
        finally:
            out["concurrent_prune"] = pruning.stop()
    out["seeded_after"] = _seeded_left(engine)
    out["drain_ratio_to_baseline_median"] = _ratio(out["drain"]["tasks_per_s"], baseline)


# --- the whole measurement ------------------------------------------------------------------------


def measure(sizes: Sizes, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """The history measurement; fills ``out`` as it goes (so a later failure keeps the
    figures measured before it) and returns it."""
    out = {} if out is None else out
    out["sizes"] = dataclasses.asdict(sizes)
    layout = Layout(sizes.tasks, sizes.prune, int(time.time() * 1000))
    out["layout"] = {
        "old_finished": "32 to 60 days ago (the timed prune's slice)",
        "recent_finished": "an hour to 28 days ago",
        "prune_older_than_days": PRUNE_AGE_DAYS,
        "concurrent_prune_older_than_days": CONCURRENT_AGE_DAYS,
        "failed_share": 0.1,
    }
    with postgres_target(use_redis=True) as target, target.client() as client:
        engine = client.service.store.engine
        _say(f"seeding {sizes.tasks:,} finished tasks with their runs")
        out["seed"] = seed(engine, layout, sizes.chunk)
        out["sizing_before"] = sizing(engine)
        _say(f"searching at {sizes.tasks:,} tasks")
        out["search_before_prune"] = search(engine, layout, sizes.search_repeats)
        _say(f"max p95 {out['search_before_prune']['max_p95_ms']:.1f} ms; pruning {sizes.prune:,}")
        out["prune"] = prune(client, target, PRUNE_AGE_DAYS)
        _say(
            f"pruned in {out['prune']['seconds']:.1f} s "
            f"({out['prune']['tasks_per_s']:,.0f} tasks/s); vacuum"
        )
        out["sizing_after_prune"] = sizing(engine)
        out["vacuum_after_prune_seconds"] = _vacuum(engine)
        out["search_after_prune"] = search(engine, layout, sizes.search_repeats)
        _say(f"max p95 {out['search_after_prune']['max_p95_ms']:.1f} ms after the prune")

        _say(f"automatic pruning, {sizes.rounds} x baseline then pruning worker")
        auto: dict[str, Any] = out.setdefault("auto_pruning", {})
        auto_pruning(client, target, sizes, auto)
        _say(
            f"drain ratio {auto['drain']['ratio']:.3f} (medians "
            f"{auto['drain']['pruning_median']:,.0f} / {auto['drain']['baseline_median']:,.0f}), "
            f"pickup p99 ratio {auto['pickup']['p99_ratio']:.2f}, valid {auto['valid']}"
        )
        _say("manual taskrt prune running flat out (secondary)")
        manual: dict[str, Any] = out.setdefault("manual_prune", {})
        manual_prune(client, target, sizes, manual, auto["drain"]["baseline_median"])
        _say(
            f"drain while taskrt prune {manual['drain']['tasks_per_s']:,.0f} tasks/s "
            f"(ratio {manual['drain_ratio_to_baseline_median']:.3f})"
        )
    return out


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    parser.add_argument("--tasks", type=int, help="tasks to seed")
    parser.add_argument("--prune", type=int, help="of which old (pruned by the timed prune)")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.tasks is not None:
        sizes = dataclasses.replace(sizes, tasks=args.tasks, chunk=min(sizes.chunk, args.tasks))
    if args.prune is not None:
        sizes = dataclasses.replace(sizes, prune=args.prune)
    print(json.dumps(measure(sizes), indent=2, default=str))


if __name__ == "__main__":
    main()
