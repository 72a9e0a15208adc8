"""Per-type timeouts: an async handler is cancelled, a sync one is failed as timed out while its
thread runs on, and the worker's slot accounting stays right (issue 3, item 3)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import task_row, wait_status
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
    asyncio may wake a sleep up to a millisecond early, so a few milliseconds of slack."""
    slack = timedelta(milliseconds=5)
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
