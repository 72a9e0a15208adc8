"""Pure parts of the worker and the outcome rules (no services)."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import taskrt
from taskrt import logs
from taskrt.exceptions import NonRetryableError, ValidationError
from taskrt.outcomes import (
    OutcomeBuilder,
    error_type_name,
    format_traceback,
    jsonable_result,
    storable_text,
)
from taskrt.plugins import Registry
from taskrt.queue.keyspace import Keyspace
from taskrt.records import ClaimedRun
from taskrt.retry import Failure, RetryDecision
from taskrt.runtime import Runtime
from taskrt.settings import Settings
from taskrt.worker.execution import ActiveRun
from taskrt.worker.isolation import Isolation
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


# --- bounded retry delays, storable errors (issue 12, #1) ------------------------------------


class _Answers:
    """A strategy plugin answering a fixed, possibly absurd, delay."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def decide(self, failure: Failure) -> RetryDecision:
        return RetryDecision(retry=True, delay=self.delay)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (float("nan"), 600.0),
        (float("inf"), 600.0),
        (1e308, 600.0),
        (float("-inf"), 0.0),
        (-5.0, 0.0),
        (42.0, 42.0),
    ],
)
def test_whatever_a_strategy_answers_the_delay_is_bounded(answer: float, expected: float) -> None:
    registry = Registry(retry_strategies={"answers": _Answers})
    builder = OutcomeBuilder(registry, traceback_limit=300, max_retry_delay=600.0)
    run = claimed(retry="answers", retry_params={"delay": answer})
    assert builder.failed(run, RuntimeError()).retry_delay == expected


def test_a_retry_request_is_bounded_too(builder: OutcomeBuilder) -> None:
    finish = builder.failed(claimed(), taskrt.Retry(delay=1e308))
    assert finish.retry_delay == builder.max_retry_delay == 30 * 86400.0


def test_clamping_is_logged_at_most_once_a_minute_per_strategy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry(retry_strategies={"answers.once": _Answers})
    builder = OutcomeBuilder(registry, traceback_limit=300, max_retry_delay=600.0)
    run = claimed(retry="answers.once", retry_params={"delay": float("inf")})
    with caplog.at_level(logging.WARNING, logger="taskrt.worker"):
        for _ in range(20):
            builder.failed(run, RuntimeError())
    lines = [r.getMessage() for r in caplog.records if "answers.once" in r.getMessage()]
    assert len(lines) == 1
    assert "above the maximum" in lines[0]


def test_error_text_is_made_storable() -> None:
    assert storable_text("a\x00b") == "a\\x00b"
    assert storable_text("lone \ud800 surrogate") == "lone \\ud800 surrogate"
    assert storable_text("plain é") == "plain é"
    builder = OutcomeBuilder(Registry(), traceback_limit=300)
    finish = builder.failed(claimed(retry="none"), RuntimeError("nul\x00 and \udfff"))
    assert "\x00" not in (finish.error_message or "") + (finish.error_traceback or "")
    (finish.error_message or "").encode("utf-8")


# --- rate-limited log lines (issue 12, #17) --------------------------------------------------


def test_rate_limited_log_writes_one_line_per_key_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = logs.RateLimitedLog(interval=0.2)
    logger = logging.getLogger("taskrt.test.ratelimit")
    with caplog.at_level(logging.WARNING, logger="taskrt.test.ratelimit"):
        written = [limiter.log(logger, logging.WARNING, "a", "entry %d", n) for n in range(5)]
        written.append(limiter.log(logger, logging.WARNING, "b", "other key"))
        time.sleep(0.25)
        written.append(limiter.log(logger, logging.WARNING, "a", "entry %d", 9))
    assert written == [True, False, False, False, False, True, True]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "entry 0",
        "other key",
        "entry 9 (4 more like it suppressed since the last one)",
    ]


# --- suspect runs execute alone (issue 12, #12) ----------------------------------------------


def test_a_suspect_run_waits_until_its_worker_holds_nothing_else() -> None:
    isolation = Isolation(uuid.uuid4())
    plain, suspect = ActiveRun(run=claimed()), ActiveRun(run=claimed(suspect=True))
    assert isolation.park([plain, suspect]) == [plain]
    assert isolation.engaged
    started: list[ActiveRun] = []

    def start(active: ActiveRun) -> bool:
        started.append(active)
        return True

    held = {plain.run.run_id, suspect.run.run_id}
    isolation.advance(held, busy=False, start_alone=start)
    assert started == []  # the plain run is still held
    isolation.advance({suspect.run.run_id}, busy=True, start_alone=start)
    assert started == []  # a claim on its way, or a slot in use
    isolation.advance({suspect.run.run_id}, busy=False, start_alone=start)
    assert started == [suspect]
    assert isolation.engaged  # until its outcome is written
    isolation.advance({suspect.run.run_id}, busy=True, start_alone=start)
    assert isolation.engaged
    isolation.advance(set(), busy=False, start_alone=start)
    assert not isolation.engaged


def test_a_suspect_whose_isolation_cannot_be_recorded_stays_parked() -> None:
    isolation = Isolation(uuid.uuid4())
    first, second = ActiveRun(run=claimed(suspect=True)), ActiveRun(run=claimed(suspect=True))
    assert isolation.park([first, second]) == []
    answers: list[bool | None] = [None, False, True]
    tried: list[ActiveRun] = []

    def start(active: ActiveRun) -> bool | None:
        tried.append(active)
        return answers.pop(0)

    held = {first.run.run_id, second.run.run_id}
    isolation.advance(held, busy=False, start_alone=start)  # the store is away: kept
    isolation.advance(held, busy=False, start_alone=start)  # no longer ours: dropped
    isolation.advance({second.run.run_id}, busy=False, start_alone=start)
    assert tried == [first, first, second]
    assert isolation.engaged
    isolation.advance(set(), busy=False, start_alone=start)
    assert not isolation.engaged
    assert answers == []
