"""Focused faults around claims and lease renewals (issue 12, defects 10, 11 and 16), beside
the broader scenarios of test_postgres_faults.py and test_redis_faults.py:

- pooled connections a PostgreSQL restart closed are never handed out again (no first
  statement after a restart fails), on SQLAlchemy's path and on the raw psycopg fast path;
- a claim a crash undid (it was committed without waiting for the WAL flush) is detected when
  the outcome is refused, and its run goes back to its queue at once;
- lease renewals in PostgreSQL go on while Redis hangs or refuses connections, and a Redis
  failure alone never makes a worker give up a lease the database still holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
import redis

from taskrt.db.engine import create_engine
from taskrt.store import Store
from tests.chaos.harness import Chaos
from tests.support.procs import wait_for

pytestmark = pytest.mark.services


def _wait_started(chaos: Chaos, count: int, timeout: float = 30) -> None:
    wait_for(lambda: len(chaos.executions()) >= count, timeout, interval=0.02,
             message=f"{count} handler starts")  # fmt: skip


def _runs(chaos: Chaos, task: uuid.UUID) -> list[tuple[int, str]]:
    return [
        (row[0], row[1])
        for row in chaos.rows(
            "SELECT attempt, status FROM task_runs WHERE task_id = %s ORDER BY enqueued_at", task
        )
    ]


# --- defect 10: stale pooled connections --------------------------------------------------------


def test_no_statement_fails_on_a_pooled_connection_a_restart_closed(chaos: Chaos) -> None:
    store = Store(create_engine(chaos.database_url, pool_size=2))
    try:
        # fill both pools (the main one and the relaxed one claims use) with connections
        store.ping()
        with store.raw_statement() as raw:
            raw.execute("SELECT 1")
        with store.raw_statement(relaxed=True) as raw:
            raw.execute("SELECT 1")

        chaos.postgres.restart("fast")

        store.ping()  # SQLAlchemy's path
        with store.raw_statement() as raw:  # the psycopg fast path
            assert raw.execute("SELECT 1").fetchone() == (1,)
        with store.raw_statement(relaxed=True) as raw:  # claims and renewals
            assert raw.execute("SELECT 1").fetchone() == (1,)
        assert store.claim_runs([uuid.uuid4()], worker_id=uuid.uuid4(), lease_token="t",
                                lease_ttl=30) == []  # fmt: skip
    finally:
        store.dispose()


def test_a_restart_while_the_worker_idles_fails_no_claim(chaos: Chaos) -> None:
    worker = chaos.spawn("w1", "-c", "2")
    warm = chaos.enqueue_records(4, ms=10)
    chaos.wait_final(warm, timeout=30)  # its pooled connections were used, then idle

    chaos.postgres.restart("fast")
    back = time.time()
    tasks = chaos.enqueue_records(4, ms=10)
    states = chaos.wait_final(tasks, timeout=30)
    assert set(states.values()) == {"completed"}, states
    starts = [e.at for e in chaos.executions() if e.task_id in tasks]
    assert max(starts) - back <= 2.0, f"started {max(starts) - back:.2f} s after the restart"
    assert "leased run(s) failed" not in worker.log(), (
        "a claim failed on a pooled connection the restart had closed"
    )


# --- defect 11: claims undone by a crash --------------------------------------------------------


@contextmanager
def _lazy_wal_writer(chaos: Chaos) -> Iterator[None]:
    """Asynchronous commits reach the disk only every 10 s (instead of every 200 ms), so a
    crash right after a claim surely undoes it."""

    def setting(value: str | None) -> None:
        with psycopg.connect(chaos.postgres.libpq(), autocommit=True) as conn:
            if value is None:
                conn.execute("ALTER SYSTEM RESET wal_writer_delay")
            else:
                conn.execute(f"ALTER SYSTEM SET wal_writer_delay = '{value}'")
            conn.execute("SELECT pg_reload_conf()")

    setting("10s")
    time.sleep(0.5)  # the WAL writer takes the new delay at its next wake-up
    try:
        yield
    finally:
        chaos.postgres.reset()
        setting(None)


def test_a_claim_a_crash_undid_goes_back_to_its_queue_at_once(chaos: Chaos) -> None:
    with _lazy_wal_writer(chaos):
        # the default reconcile (every 60 s) and lease TTL (30 s): neither may be what heals
        worker = chaos.spawn("w1", "-c", "1", heartbeat_interval=60)
        # delayed, so the producer's own (synchronous) commits are long done at the claim
        (task,) = chaos.enqueue_records(1, ms=2000, delay=1.0)
        _wait_started(chaos, 1)
        chaos.postgres.crash()
        chaos.postgres.start()
        back = time.time()
        assert _runs(chaos, task) == [(1, "queued")], (
            "the crash did not undo the claim (it reached the disk): the test proves nothing"
        )

        states = chaos.wait_final([task], timeout=20)
        done = time.time()
    assert states == {task: "completed"}
    assert _runs(chaos, task) == [(1, "succeeded")]
    assert done - back <= 10, f"completed {done - back:.1f} s after the database was back"
    runs = chaos.executions_by_task()[task]
    # the handler ran twice under attempt 1: the database forgot the first; that is unavoidable
    assert [(e.attempt, e.run_id) for e in runs] == [(1, runs[0].run_id)] * 2
    assert "a database crash undid it" in worker.log()


# --- defect 16: renewals in PostgreSQL never wait on Redis ---------------------------------------


def _expired_leases(chaos: Chaos, tasks: list[uuid.UUID]) -> int:
    return int(
        chaos.scalar(
            "SELECT count(*) FROM task_runs WHERE task_id = ANY(%s) AND status = 'running' "
            "AND lease_expires_at < now()",
            tasks,
        )
    )


def test_database_leases_are_renewed_while_redis_is_frozen(chaos: Chaos) -> None:
    chaos.spawn("w1", "-c", "2", lease_ttl=1)
    tasks = chaos.enqueue_records(2, ms=4000)
    _wait_started(chaos, 2)

    chaos.redis.freeze()
    try:
        time.sleep(2.5)  # more than twice the TTL
        expired = _expired_leases(chaos, tasks)
    finally:
        chaos.redis.thaw()
    assert expired == 0, f"{expired} database lease(s) lapsed while only Redis was frozen"
    states = chaos.wait_final(tasks, timeout=30)
    assert set(states.values()) == {"completed"}, states
    assert chaos.run_statuses(tasks) == {"succeeded": 2}
    assert len(chaos.executions()) == 2


@contextmanager
def _redis_refusing(chaos: Chaos) -> Iterator[None]:
    """Redis keeps its data but refuses every client: new connections fail to authenticate
    and the open ones are closed."""
    client = chaos.redis.client()
    client.config_set("requirepass", "chaos-secret")
    client.client_kill_filter(_type="normal", skipme=True)
    client.close()
    try:
        yield
    finally:
        admin = redis.Redis.from_url(chaos.redis.url, password="chaos-secret")
        admin.config_set("requirepass", "")
        admin.close()


def test_a_redis_refusing_clients_costs_no_lease_the_database_holds(chaos: Chaos) -> None:
    worker = chaos.spawn("w1", "-c", "1", lease_ttl=1, worker_prefetch=1)
    executing, prefetched = chaos.enqueue_records(2, ms=2500)
    wait_for(
        lambda: _runs(chaos, prefetched) == [(1, "running")],
        30,
        message="the second task claimed (prefetched)",
    )
    with _redis_refusing(chaos):
        time.sleep(4.0)  # the executing run ends, the prefetched one starts, past the TTL
    states = chaos.wait_final([executing, prefetched], timeout=30)
    assert set(states.values()) == {"completed"}, states
    # no run was given up and reaped as lost: each task has its one succeeded run
    assert chaos.run_statuses([executing, prefetched]) == {"succeeded": 2}, worker.log()[-3000:]
    assert [e.task_id for e in chaos.executions()] == [executing, prefetched]
