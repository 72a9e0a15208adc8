"""The queue-backend contract, in process: the same bodies on Redis, PostgreSQL and SQLite."""

from __future__ import annotations

import time
import uuid

import pytest

from taskrt.ids import uuid7
from taskrt.outcomes import OutcomeBuilder
from taskrt.records import WorkerIdentity
from taskrt.service import EnqueueSpec
from tests.conformance.conftest import Stack

pytestmark = pytest.mark.services


def worker(ttl: float = 30.0) -> WorkerIdentity:
    return WorkerIdentity(id=uuid7(), lease_ttl=ttl)


def enqueue(
    stack: Stack, n: int = 1, name: str = "example.echo", **options: object
) -> list[uuid.UUID]:
    specs = [EnqueueSpec(name=name, payload={"i": i}, **options) for i in range(n)]  # type: ignore[arg-type]
    return [r.id for r in stack.service.enqueue_many(specs)]


def build(stack: Stack) -> OutcomeBuilder:
    return OutcomeBuilder(stack.service.registry, traceback_limit=2000)


def test_fifo_within_a_queue_and_strict_order_across_queues(stack: Stack) -> None:
    normal = enqueue(stack, 3, queue="normal")
    high = enqueue(stack, 3, queue="high")
    runs = stack.backend.acquire(["high", "normal"], 5, worker())
    assert [r.task_id for r in runs] == [*high, *normal[:2]]
    assert all(r.attempt == 1 for r in runs)


def test_success_is_recorded_once_and_the_queue_empties(stack: Stack) -> None:
    (task_id,) = enqueue(stack, queue="q")
    w = worker()
    (run,) = stack.backend.acquire(["q"], 1, w)
    assert stack.service.get(task_id).status == "running"
    report = stack.backend.finish([build(stack).succeeded(run, {"v": 1})], w)
    assert len(report.won) == 1
    task = stack.service.get(task_id)
    assert task.status == "completed"
    assert [(r.status, r.result) for r in task.runs] == [("succeeded", {"v": 1})]
    counts = stack.backend.counts(["q"])[0]
    assert (counts.ready, counts.delayed, counts.inflight) == (0, 0, 0)
    assert stack.backend.acquire(["q"], 1, w) == []


def test_a_taken_over_lease_fences_the_late_outcome(stack: Stack) -> None:
    (task_id,) = enqueue(stack, queue="fence", trace_id="trace-fence")
    slow = worker(ttl=0.3)
    (run,) = stack.backend.acquire(["fence"], 1, slow)
    time.sleep(0.5)
    report = stack.backend.maintain()
    assert report.reaped_lost == 1
    (lost,) = report.lost  # what the reaper's log line is written from
    assert (lost.task_id, lost.run_id, lost.outcome) == (task_id, run.run_id, "retry")
    assert lost.trace_id == "trace-fence"
    fast = worker()
    (retry,) = stack.backend.acquire(["fence"], 1, fast)
    assert retry.attempt == 2
    late = stack.backend.finish([build(stack).succeeded(run, "late")], slow)
    assert late.won == []
    assert len(late.fenced) == 1
    stack.backend.finish([build(stack).succeeded(retry, "on time")], fast)
    runs = stack.service.get(task_id).runs
    assert [(r.status, r.result) for r in runs] == [("lost", None), ("succeeded", "on time")]


def test_a_fenced_run_in_a_batch_does_not_block_or_undo_the_others(stack: Stack) -> None:
    enqueue(stack, 2, queue="mixed")
    w = worker(ttl=1.0)
    run_a, run_b = stack.backend.acquire(["mixed"], 2, w)
    time.sleep(0.6)
    assert stack.backend.renew([run_b], w).lost == []  # run_b's lease now outlives run_a's
    time.sleep(0.6)
    report = stack.backend.maintain()  # run_a's lease expired: the reaper takes it
    assert [lost.run_id for lost in report.lost] == [run_a.run_id]
    outcome = build(stack)
    batch = stack.backend.finish([outcome.succeeded(run_a, "a"), outcome.succeeded(run_b, "b")], w)
    assert [f.run.run_id for f in batch.won] == [run_b.run_id]
    assert [f.run.run_id for f in batch.fenced] == [run_a.run_id]
    b = stack.service.get(run_b.task_id)
    assert (b.status, [(r.status, r.result) for r in b.runs]) == (
        "completed",
        [("succeeded", "b")],
    )
    a = stack.service.get(run_a.task_id)
    assert [r.status for r in a.runs] == ["lost", "queued"]  # the late outcome wrote nothing


def test_retries_follow_the_strategy_then_dead_letter_and_replay(stack: Stack) -> None:
    (task_id,) = enqueue(
        stack, queue="r", max_retries=1, retry="fixed", retry_params={"delay": 0.3}
    )
    w = worker()
    (first,) = stack.backend.acquire(["r"], 1, w)
    stack.backend.finish([build(stack).failed(first, RuntimeError("one"))], w)
    assert stack.service.get(task_id).status == "retrying"
    assert stack.backend.acquire(["r"], 1, w) == []  # not before its delay
    time.sleep(0.35)
    (second,) = stack.backend.acquire(["r"], 1, w)
    assert second.attempt == 2
    stack.backend.finish([build(stack).failed(second, RuntimeError("two"))], w)
    task = stack.service.get(task_id)
    assert task.status == "failed"
    assert task.failure_reason == "retries_exhausted"
    assert [r.error_message for r in task.runs] == ["one", "two"]
    assert task.runs[0].next_retry_at is not None
    gap = (task.runs[1].started_at - task.runs[0].finished_at).total_seconds()  # type: ignore[operator]
    assert gap >= 0.3
    assert stack.backend.counts(["r"])[0].dlq == 1
    assert [t.id for t in stack.service.dead_letters("r")] == [task_id]
    result = stack.service.replay("r", [task_id])
    assert result.replayed == [task_id]
    assert stack.service.replay("r", [task_id]).replayed == []  # only once
    assert stack.backend.counts(["r"])[0].dlq == 0
    (third,) = stack.backend.acquire(["r"], 1, w)
    assert third.attempt == 3
    assert third.retry_count == 0  # a fresh retry budget


def test_delayed_runs_start_only_when_due(stack: Stack) -> None:
    (late,) = enqueue(stack, queue="d", delay=0.8)
    (now,) = enqueue(stack, queue="d")
    w = worker()
    assert [r.task_id for r in stack.backend.acquire(["d"], 5, w)] == [now]
    counts = stack.backend.counts(["d"])[0]
    assert counts.delayed == 1
    time.sleep(0.9)
    (run,) = stack.backend.acquire(["d"], 5, w)
    assert run.task_id == late
    assert run.started_at is not None
    assert (run.started_at - run.enqueued_at).total_seconds() >= 0.8


def test_a_cancelled_queued_task_never_runs(stack: Stack) -> None:
    (task_id,) = enqueue(stack, queue="c")
    task = stack.service.cancel(task_id)
    assert task.status == "cancelled"
    assert [r.status for r in task.runs] == ["cancelled"]
    assert stack.backend.acquire(["c"], 5, worker()) == []


def test_cancelling_a_running_task_is_seen_at_renewal(stack: Stack) -> None:
    (task_id,) = enqueue(stack, queue="c")
    w = worker()
    (run,) = stack.backend.acquire(["c"], 1, w)
    assert stack.service.cancel(task_id).status == "running"
    report = stack.backend.renew([run], w)
    assert report.cancel_requested == [run.run_id]
    stack.backend.finish([build(stack).cancelled(run)], w)
    assert stack.service.get(task_id).status == "cancelled"


def test_handing_back_spends_no_attempt(stack: Stack) -> None:
    (task_id,) = enqueue(stack, queue="h")
    w = worker()
    (run,) = stack.backend.acquire(["h"], 1, w)
    assert stack.backend.hand_back([run], w) == 1
    assert stack.service.get(task_id).status == "queued"
    (again,) = stack.backend.acquire(["h"], 1, worker())
    assert again.run_id == run.run_id
    assert again.attempt == 1


def test_handing_back_with_a_delay_spends_nothing_and_holds_the_run_that_long(
    stack: Stack,
) -> None:
    (task_id,) = enqueue(stack, queue="later")
    w = worker()
    (run,) = stack.backend.acquire(["later"], 1, w)
    assert stack.backend.hand_back([run], w, delay=0.5) == 1
    task = stack.service.get(task_id)
    assert task.status == "queued"
    assert [(r.attempt, r.status, r.started_at) for r in task.runs] == [(1, "queued", None)]
    assert stack.backend.counts(["later"])[0].inflight == 0
    assert stack.backend.acquire(["later"], 1, worker()) == []  # not before its delay
    time.sleep(0.6)
    (again,) = stack.backend.acquire(["later"], 1, worker())
    assert (again.run_id, again.attempt) == (run.run_id, 1)
    # a second hand-back of the same claim is fenced: the run is another worker's now
    assert stack.backend.hand_back([run], w, delay=0.5) == 0


def test_pause_stops_fetching_until_resume(stack: Stack) -> None:
    enqueue(stack, queue="p")
    stack.service.pause("p")
    assert stack.backend.acquire(["p"], 1, worker()) == []
    assert stack.backend.counts(["p"])[0].paused
    stack.service.resume("p")
    assert len(stack.backend.acquire(["p"], 1, worker())) == 1


def test_poison_budget(stack: Stack) -> None:
    (task_id,) = enqueue(stack, queue="poison")
    # lost beside other runs (it was not started alone): not charged, the next run is suspect
    assert len(stack.backend.acquire(["poison"], 1, worker(ttl=0.2))) == 1
    time.sleep(0.3)
    stack.backend.maintain()
    assert stack.service.get(task_id).status == "retrying"
    for _ in range(stack.settings.poison_budget):
        (run,) = stack.backend.acquire(["poison"], 1, worker(ttl=0.2))
        assert run.suspect
        assert stack.store.mark_isolated(run)  # its worker started it alone
        time.sleep(0.3)
        stack.backend.maintain()
    task = stack.service.get(task_id)
    assert task.lost_runs == 3
    assert task.status == "failed"
    assert task.failure_reason == "lost"
    assert stack.backend.counts(["poison"])[0].dlq == 1


def test_renewal_keeps_a_lease_alive_past_its_ttl(stack: Stack) -> None:
    (task_id,) = enqueue(stack, queue="renew")
    w = worker(ttl=0.5)
    (run,) = stack.backend.acquire(["renew"], 1, w)
    for _ in range(4):
        time.sleep(0.2)
        assert stack.backend.renew([run], w).lost == []
        stack.backend.maintain()
    assert len(stack.backend.finish([build(stack).succeeded(run, 1)], w).won) == 1
    assert stack.service.get(task_id).status == "completed"


def test_weighted_fetch_serves_every_queue(stack: Stack) -> None:
    from random import Random

    from taskrt.worker.main import weighted_order

    enqueue(stack, 20, queue="heavy")
    enqueue(stack, 20, queue="light")
    rng = Random(3)
    taken: dict[str, int] = {"heavy": 0, "light": 0}
    w = worker()
    for _ in range(12):
        order = weighted_order(["heavy", "light"], {"heavy": 3, "light": 1}, rng)
        for run in stack.backend.acquire(order, 1, w):
            taken[run.queue] += 1
    assert taken["heavy"] > taken["light"] > 0


# --- the two-stage fetch and the index's leases: declared on every backend -------------------


def test_a_two_stage_fetch_leases_in_order_then_claims(stack: Stack) -> None:
    high = enqueue(stack, 2, queue="two-high")
    normal = enqueue(stack, 2, queue="two-normal")
    w = worker()
    stack.backend.prepare_wait(["two-high", "two-normal"])
    leased = stack.backend.lease(["two-high", "two-normal"], 3, w)
    assert len(leased) == 3
    assert leased.queues() == ["two-high", "two-high", "two-normal"]
    runs = stack.backend.claim(leased, w)
    assert [r.task_id for r in runs] == [*high, normal[0]]
    assert {r.lease_token for r in runs} == {leased.token}
    assert [t.status for t in map(stack.service.get, high)] == ["running", "running"]
    assert stack.backend.renew_index(runs, w) == []  # nobody else holds their leases
    report = stack.backend.finish([build(stack).succeeded(r, None) for r in runs], w)
    assert len(report.won) == 3


def test_unleasing_puts_runs_back_first_in_line_and_spends_nothing(stack: Stack) -> None:
    first, second = enqueue(stack, 2, queue="unlease")
    w = worker()
    leased = stack.backend.lease(["unlease"], 1, w)
    assert leased.queues() == ["unlease"]
    assert stack.backend.unlease(leased, w) == 1
    (again,) = stack.backend.acquire(["unlease"], 1, worker())
    assert again.task_id == first
    assert again.attempt == 1
    assert stack.service.get(second).status == "queued"


def test_keeps_index_says_whether_the_leases_have_a_second_copy(stack: Stack) -> None:
    assert stack.backend.keeps_index is (stack.kind == "redis")
