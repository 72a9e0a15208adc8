"""Pure parts of the worker and the outcome rules (no services)."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import taskrt
from taskrt.exceptions import NonRetryableError, ValidationError
from taskrt.outcomes import OutcomeBuilder, error_type_name, format_traceback, jsonable_result
from taskrt.queue.base import ClaimedRun
from taskrt.queue.keyspace import Keyspace
from taskrt.runtime import Runtime
from taskrt.settings import Settings
from taskrt.worker.main import parse_queues, weighted_order
from taskrt.worker.slots import SlotPool
from taskrt.worker.threads import HandlerThreads


def test_parse_queues_strict_and_weighted() -> None:
    assert parse_queues("high,normal") == (["high", "normal"], None)
    assert parse_queues("high:5, normal:1") == (["high", "normal"], {"high": 5, "normal": 1})
    assert parse_queues("a:3,b") == (["a", "b"], {"a": 3, "b": 1})
    for bad in ("", "a,a", "a:0", "a:x", "bad queue"):
        with pytest.raises(ValidationError):
            parse_queues(bad)


def test_weighted_order_puts_each_queue_first_in_proportion_and_starves_none() -> None:
    rng = random.Random(7)
    firsts = Counter(
        weighted_order(["high", "normal"], {"high": 5, "normal": 1}, rng)[0] for _ in range(6000)
    )
    assert 0.78 < firsts["high"] / 6000 < 0.88
    assert firsts["normal"] > 0
    assert sorted(weighted_order(["a", "b", "c"], {"a": 1, "b": 1, "c": 1}, rng)) == ["a", "b", "c"]


def test_keyspace_shares_one_hash_tag_per_queue() -> None:
    keys = Keyspace("pre:").queue("mail")
    for key in (keys.ready, keys.delayed, keys.inflight, keys.leases, keys.dlq, keys.paused):
        assert key.startswith("pre:queue:{mail}:")
    with pytest.raises(ValueError, match="hash tag"):
        Keyspace("{x}")


def test_slots_start_what_fits_and_buffer_the_rest_in_order() -> None:
    pool: SlotPool[str] = SlotPool(capacity=2, prefetch=2)
    assert pool.room() == 4
    assert pool.offer(["a", "b", "c"]) == ["a", "b"]  # c waits for a slot
    assert (pool.busy, pool.buffered, pool.room()) == (2, 1, 1)
    assert pool.done() == "c"  # a's slot goes straight to c
    assert (pool.busy, pool.buffered) == (2, 0)
    assert pool.done() is None
    assert pool.busy == 1
    assert pool.offer(["d", "e", "f"]) == ["d"]
    assert pool.take_buffer() == ["e", "f"]
    assert pool.room() == 2


def test_the_fetcher_waits_for_room_and_is_woken_when_a_slot_frees() -> None:
    pool: SlotPool[int] = SlotPool(capacity=1, prefetch=0)
    pool.offer([1])
    assert pool.wait_room(0.01) == 0
    threading.Timer(0.05, pool.done).start()
    assert pool.wait_room(2.0) == 1
    assert pool.wait_idle(0.1)


def test_handler_threads_grow_when_a_thread_is_stuck() -> None:
    pool = HandlerThreads()
    release = threading.Event()
    results: list[object] = []
    done = threading.Event()
    pool.run(release.wait, 5)
    pool.run(lambda: (results.append(42), done.set()))
    assert done.wait(2)  # not queued behind the stuck call
    assert results == [42]
    assert pool.size == 2
    release.set()
    again = threading.Event()
    pool.run(again.set)
    assert again.wait(2)
    pool.run(lambda: 1 / 0)  # an exception is logged; the pool goes on
    after = threading.Event()
    pool.run(after.set)
    assert after.wait(2)
    assert pool.size <= 3
    pool.shutdown()


def claimed(**overrides: object) -> ClaimedRun:
    fields: dict[str, object] = {
        "run_id": uuid.uuid4(),
        "task_id": uuid.uuid4(),
        "attempt": 1,
        "queue": "default",
        "lease_token": "tok",
        "name": "example.echo",
        "payload": {},
        "max_retries": 2,
        "retry": "fixed",
        "retry_params": {"delay": 7},
        "timeout": None,
        "trace_id": None,
        "retry_count": 0,
        "lost_runs": 0,
        "enqueued_at": datetime.now(UTC),
        "available_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return ClaimedRun(**fields)  # type: ignore[arg-type]


@pytest.fixture
def builder() -> OutcomeBuilder:
    runtime = Runtime.load(Settings())
    return OutcomeBuilder(runtime.registry, traceback_limit=300)


def test_a_failure_with_retries_left_follows_the_strategy(builder: OutcomeBuilder) -> None:
    finish = builder.failed(claimed(), RuntimeError("boom"))
    assert finish.status == "failed"
    assert finish.retry_delay == 7
    assert finish.next_run_id
    assert finish.error_type == "RuntimeError"
    assert finish.error_message == "boom"
    assert "RuntimeError: boom" in (finish.error_traceback or "")


def test_retries_are_counted_from_retry_count_not_attempt(builder: OutcomeBuilder) -> None:
    # attempt 3 after two lost runs: no retry spent yet, so it still retries
    assert builder.failed(claimed(attempt=3, retry_count=0), RuntimeError()).retry_delay == 7
    exhausted = builder.failed(claimed(attempt=3, retry_count=2), RuntimeError())
    assert exhausted.retry_delay is None
    assert exhausted.dead_letters
    assert exhausted.reason == "retries_exhausted"


def test_non_retryable_and_retry_requests(builder: OutcomeBuilder) -> None:
    dead = builder.failed(claimed(), NonRetryableError("no"))
    assert dead.dead_letters
    assert dead.reason == "non_retryable"
    asked = builder.failed(claimed(), taskrt.Retry(delay=1.5))
    assert asked.retry_delay == 1.5
    assert asked.reason == "retry_requested"
    at_limit = builder.failed(claimed(retry_count=2), taskrt.Retry(delay=1.5))
    assert at_limit.dead_letters


def test_an_unknown_strategy_on_the_worker_falls_back_instead_of_losing_the_task(
    builder: OutcomeBuilder,
) -> None:
    finish = builder.failed(claimed(retry="not.installed", retry_count=1), RuntimeError())
    assert finish.retry_delay == 2.0


def test_strategy_none_gives_up_at_once(builder: OutcomeBuilder) -> None:
    finish = builder.failed(claimed(retry="none", retry_params={}), RuntimeError())
    assert finish.dead_letters
    assert finish.reason == "not_retried"


def test_tracebacks_keep_their_tail_when_truncated() -> None:
    try:
        raise ValueError("x" * 1000)
    except ValueError as exc:
        text = format_traceback(exc, 200)
    assert text.startswith("... (truncated)")
    assert text.endswith("x\n")
    assert error_type_name(NonRetryableError()) == "taskrt.exceptions.NonRetryableError"


def test_results_are_stored_as_json() -> None:
    class Model(BaseModel):
        at: datetime

    @dataclass
    class Point:
        x: int

    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    assert jsonable_result(Model(at=stamp)) == {"at": "2026-01-02T00:00:00Z"}
    assert jsonable_result(Point(3)) == {"x": 3}
    assert jsonable_result({"when": stamp}) == {"when": str(stamp)}
    assert jsonable_result([1, "a", None]) == [1, "a", None]
