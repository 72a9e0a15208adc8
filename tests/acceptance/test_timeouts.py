"""Per-type timeouts: an async handler is cancelled, a sync one is failed as timed out while its
thread runs on, and the worker's slot accounting stays right (issue 3, item 3). The hard
deadline holds whatever the handler does: a coroutine that swallows its cancellation or blocks
the event loop is failed with reason ``timeout`` and its slot written off, and a task that keeps
timing out reaches the dead-letter queue (issue 12, item 13)."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from typing import Any

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import task_row, wait_run_running, wait_status
from tests.api.support import free_port
from tests.observability.support import scrape
from tests.support.db import Db
from tests.support.procs import wait_for

pytestmark = pytest.mark.services

TIMEOUT = timedelta(seconds=0.5)
SPIN = 5.0
# correctness bound, not a benchmark: the run ended at its timeout, long before the handler did
LATE = timedelta(seconds=2.0)


def _assert_timed_out(run: Any, reason: str) -> None:
    assert run.status == "failed"
    assert run.error_type == "TimeoutError"
    assert "exceeded its timeout of 0.5 s" in run.error_message
    assert run.outcome_reason == reason
    duration = run.finished_at - run.started_at
    assert TIMEOUT <= duration < TIMEOUT + LATE, duration


def _assert_one_at_a_time(runs: list[tuple[Any, float]]) -> None:
    """``(run, seconds its handler held the slot at least)``: on a one-slot worker each run
    starts only after the one before it gave its slot back. (``finished_at`` is no measure:
    outcomes are written after the slot is freed.) ``started_at`` is the claim time by the
    database clock plus the wait in the worker's prefetch buffer by the worker's clock, and
    asyncio may wake a sleep up to a millisecond early; on a loaded machine the claim's stamp
    trails the claim by a few milliseconds more. Slack of a quarter of the shortest hold: two
    handlers in the one slot at once would overlap by most of a hold."""
    slack = timedelta(milliseconds=25)
    spans = sorted((run.started_at, timedelta(seconds=held)) for run, held in runs)
    for (start, held), (next_start, _) in itertools.pairwise(spans):
        assert next_start - start >= held - slack, f"two runs held the one slot at once: {spans}"


def test_async_handler_is_cancelled_at_its_timeout_and_retried(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    worker = spawn(service_env, "w1", "-c", "1")
    result = client.enqueue(
        "testkit.async_slow",
        {"seconds": 30},
        max_retries=1,
        retry="fixed",
        retry_params={"delay": 0.3},
    )
    wait_status(db, result.id, "failed", timeout=30)
    first, second = db.runs(result.id)
    _assert_timed_out(first, "timeout")
    _assert_timed_out(second, "retries_exhausted")
    assert first.next_retry_at - first.finished_at >= timedelta(seconds=0.29)
    assert second.started_at >= first.next_retry_at
    assert task_row(db, result.id).failure_reason == "retries_exhausted"

    # the slot came back: the next tasks run, one at a time
    followers = [client.enqueue("example.sleep", {"ms": 100}) for _ in range(3)]
    for f in followers:
        wait_status(db, f.id, "completed", timeout=30)
    _assert_one_at_a_time([(db.runs(f.id)[0], 0.1) for f in followers])
    wait_for(lambda: rds.zcard(keys.queue("default").inflight) == 0, 5, message="no lease held")
    assert worker.stop() == 0


def test_sync_handler_that_ignores_its_timeout_is_failed_and_its_slot_freed(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
) -> None:
    worker = spawn(service_env, "w1", "-c", "1")
    spin = client.enqueue(
        "testkit.spin", {"seconds": SPIN}, max_retries=1, retry="fixed", retry_params={"delay": 0.2}
    )
    echo = client.enqueue("example.echo", {"after": "spin"})
    followers = [client.enqueue("example.sleep", {"ms": 100}) for _ in range(3)]

    wait_status(db, echo.id, "completed", timeout=30)
    (spin_first, *_) = db.runs(spin.id)
    (echo_run,) = db.runs(echo.id)
    # with one slot, the echo ran while the timed-out handler's thread was still sleeping
    assert echo_run.started_at >= spin_first.started_at + TIMEOUT
    assert echo_run.started_at < spin_first.started_at + timedelta(seconds=SPIN)

    wait_status(db, spin.id, "failed", timeout=30)
    first, second = db.runs(spin.id)
    _assert_timed_out(first, "timeout")
    _assert_timed_out(second, "retries_exhausted")
    assert second.started_at >= first.next_retry_at

    for f in followers:
        wait_status(db, f.id, "completed", timeout=30)
    # slot accounting stays exact: never two handlers of this one-slot worker counted at once
    _assert_one_at_a_time(
        [(first, 0.5), (second, 0.5), (echo_run, 0), *((db.runs(f.id)[0], 0.1) for f in followers)]
    )
    assert "its thread keeps running until the function returns" in worker.log()
    assert worker.stop() == 0


def _metrics(env: dict[str, str]) -> tuple[dict[str, str], str]:
    port = free_port()
    return {**env, "TASKRT_METRICS_PORT": str(port)}, f"http://127.0.0.1:{port}/metrics"


def _timed_out_to_the_dlq(db: Db, task_id: Any) -> tuple[Any, Any]:
    """Both runs of a task with one retry failed at their timeout; the task is dead-lettered."""
    wait_status(db, task_id, "failed", timeout=30)
    first, second = db.runs(task_id)
    _assert_timed_out(first, "timeout")
    _assert_timed_out(second, "retries_exhausted")
    assert task_row(db, task_id).failure_reason == "retries_exhausted"
    return first, second


def test_async_handler_that_swallows_its_cancellation_is_failed_and_its_slot_written_off(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    env, url = _metrics(service_env)
    worker = spawn(env, "w1", "-c", "1")
    swallow = client.enqueue(
        "testkit.async_swallow",
        {"seconds": 120},
        max_retries=1,
        retry="fixed",
        retry_params={"delay": 0.2},
    )
    followers = [client.enqueue("example.sleep", {"ms": 50}) for _ in range(3)]

    # failed at timeout + grace (1 s by default), not when the coroutine gives up in 2 minutes
    _timed_out_to_the_dlq(db, swallow.id)
    # the one slot was written off each time: the other tasks ran, on the same event loop
    for f in followers:
        wait_status(db, f.id, "completed", timeout=15)
    wait_for(lambda: rds.zcard(keys.queue("default").inflight) == 0, 5, message="no lease held")
    assert "did not stop within 1.0 s of its timeout of 0.5 s" in worker.log()
    got = scrape(url)
    abandoned = "taskrt_handlers_abandoned_total"
    assert got.value(abandoned, task_type="testkit.async_swallow", kind="coroutine") == 2
    # the abandoned coroutines hold nothing up: the worker drains and exits at once
    assert worker.stop(timeout=10) == 0


def test_async_handler_that_blocks_the_event_loop_is_failed_while_it_blocks(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
) -> None:
    env, url = _metrics({**service_env, "TASKRT_LOOP_STALL_AFTER": "1"})
    worker = spawn(env, "w1", "-c", "4")
    block = client.enqueue(
        "testkit.async_block",
        {"seconds": 3},
        max_retries=1,
        retry="fixed",
        retry_params={"delay": 0.2},
    )
    first = wait_run_running(db, block.id, 1)
    time.sleep(0.3)  # its handler holds the loop now
    # a def handler's timeout does not wait for the loop either
    spin = client.enqueue("testkit.spin", {"seconds": 2}, max_retries=0)
    echoes = [client.enqueue("example.echo", {"n": n}) for n in range(3)]

    for echo in echoes:
        wait_status(db, echo.id, "completed", timeout=15)
    wait_status(db, spin.id, "failed", timeout=15)
    (spin_run,) = db.runs(spin.id)
    _assert_timed_out(spin_run, "retries_exhausted")
    blocked_until = first.started_at + timedelta(seconds=3)
    for echo in echoes:  # def handlers kept running while the loop was blocked
        assert db.runs(echo.id)[0].finished_at < blocked_until

    first_run, _ = _timed_out_to_the_dlq(db, block.id)
    # failed at its hard deadline, while the handler still blocked the loop: never succeeded
    assert first_run.finished_at < blocked_until
    log = worker.log()
    assert "the event loop has not run for" in log
    assert f"taskrt handler of run {first_run.id} (testkit.async_block)" in log
    assert "testkit.py" in log  # the line it is stuck on
    assert "in async_block" in log
    assert "the event loop runs again after" in log
    got = scrape(url)
    assert got.value("taskrt_event_loop_stalls_total") >= 2
    abandoned = "taskrt_handlers_abandoned_total"
    assert got.value(abandoned, task_type="testkit.async_block", kind="coroutine") == 2
    assert got.value(abandoned, task_type="testkit.spin", kind="thread") == 1
    assert worker.stop(timeout=15) == 0
