"""The Redis queue backend against real Redis and PostgreSQL: scripts, fencing, recovery."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from taskrt.ids import uuid7
from taskrt.outcomes import OutcomeBuilder
from taskrt.queue.redis_backend import RedisQueueBackend, lease_value
from taskrt.records import WorkerIdentity
from taskrt.service import EnqueueSpec, TaskService
from taskrt.settings import Settings
from taskrt.store import Store
from tests.support import services

pytestmark = pytest.mark.services


def worker(ttl: float = 30.0) -> WorkerIdentity:
    return WorkerIdentity(id=uuid7(), lease_ttl=ttl)


def enqueue(service: TaskService, n: int = 1, **options: object) -> list[uuid.UUID]:
    specs = [EnqueueSpec(name="example.echo", payload={"i": i}, **options) for i in range(n)]  # type: ignore[arg-type]
    return [r.id for r in service.enqueue_many(specs)]


def outcomes(service: TaskService) -> OutcomeBuilder:
    return OutcomeBuilder(service.registry, traceback_limit=2000)


def test_enqueue_fetch_claim_finish_round_trip(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    (task_id,) = enqueue(service, queue="q1")
    counts = {c.name: c for c in backend.counts()}
    assert counts["q1"].ready == 1
    w = worker()
    (run,) = backend.acquire(["q1"], 10, w)
    assert run.task_id == task_id
    assert run.attempt == 1
    assert run.payload == {"i": 0}
    assert backend.counts(["q1"])[0].inflight == 1
    assert service.get(task_id).status == "running"
    report = backend.finish([outcomes(service).succeeded(run, {"ok": True})], w)
    assert len(report.won) == 1
    assert not report.fenced
    assert backend.counts(["q1"])[0].inflight == 0
    task = service.get(task_id)
    assert task.status == "completed"
    assert task.runs[0].result == {"ok": True}
    assert task.runs[0].status == "succeeded"


def test_strict_order_fetches_the_first_queue_before_the_second(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    low = enqueue(service, 3, queue="low")
    high = enqueue(service, 3, queue="high")
    runs = backend.acquire(["high", "low"], 4, worker())
    assert [r.task_id for r in runs[:3]] == high
    assert runs[3].task_id == low[0]


def test_a_duplicate_dispatch_is_never_leased_twice(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    (task_id,) = enqueue(service, queue="dup")
    run_id = service.get(task_id).runs[0].id
    backend.dispatch([backend_entry(run_id, "dup")])  # the relay repeating a dispatch
    w1, w2 = worker(), worker()
    first = backend.acquire(["dup"], 10, w1)
    second = backend.acquire(["dup"], 10, w2)
    assert [r.run_id for r in first] == [run_id]
    assert second == []


def backend_entry(run_id: uuid.UUID, queue: str):  # type: ignore[no-untyped-def]
    from taskrt.records import DispatchEntry

    return DispatchEntry(run_id=run_id, queue=queue)


def test_garbage_in_the_ready_list_is_dropped_and_real_work_still_flows(
    service: TaskService, backend: RedisQueueBackend, caplog: pytest.LogCaptureFixture
) -> None:
    keys = backend.keys.queue("junk")
    backend.redis.rpush(keys.ready, "not-a-run-id", b"\x80\x04\x95pickle", str(uuid.uuid4()))
    (task_id,) = enqueue(service, queue="junk")
    runs = backend.acquire(["junk"], 10, worker())
    assert [r.task_id for r in runs] == [task_id]
    assert backend.redis.zcard(keys.inflight) == 1  # only the real run holds a lease
    assert "not a run id" in caplog.text


def test_late_finishes_of_reaped_runs_write_nothing_and_the_retries_still_run(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    enqueue(service, 2, queue="fence")
    w = worker(ttl=0.3)
    run_a, run_b = backend.acquire(["fence"], 2, w)
    time.sleep(0.5)
    report = backend.maintain()  # the reaper takes run_a's and run_b's leases
    assert report.reaped_lost == 2
    # run_b's outcome arrives late together with run_a's: both fenced, nothing written
    build = outcomes(service)
    late = backend.finish([build.succeeded(run_a, 1), build.succeeded(run_b, 2)], w)
    assert late.won == []
    assert len(late.fenced) == 2
    runs = store.get_task(run_a.task_id).runs
    assert [r.status for r in runs] == ["lost", "queued"]
    # the retries are ready for another worker, and finishing them works
    w2 = worker()
    retried = backend.acquire(["fence"], 10, w2)
    assert sorted(r.attempt for r in retried) == [2, 2]
    done = backend.finish([build.succeeded(r, None) for r in retried], w2)
    assert len(done.won) == 2


def test_poison_budget_dead_letters_a_task_that_keeps_losing_its_worker(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    (task_id,) = enqueue(service, queue="poison")
    # lost beside other runs (it was not started alone): not charged, the next run is suspect
    assert len(backend.acquire(["poison"], 1, worker(ttl=0.2))) == 1
    time.sleep(0.3)
    backend.maintain()
    for _ in range(service.settings.poison_budget):
        runs = backend.acquire(["poison"], 1, worker(ttl=0.2))
        assert len(runs) == 1
        assert runs[0].suspect
        assert store.mark_isolated(runs[0])  # its worker started it alone
        time.sleep(0.3)
        backend.maintain()
    task = store.get_task(task_id)
    assert task.status == "failed"
    assert task.failure_reason == "lost"
    assert task.lost_runs == 3
    assert [r.status for r in task.runs] == ["lost"] * 4
    assert backend.redis.lrange(backend.keys.queue("poison").dlq, 0, -1) == [str(task_id).encode()]


def test_a_fetched_but_unclaimed_run_goes_back_to_the_head_of_the_queue(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    first, second = enqueue(service, 2, queue="unclaimed")
    keys = backend.keys.queue("unclaimed")
    # simulate a worker that crashed between the fetch script and the claim
    backend.scripts.fetch(
        keys=[keys.ready, keys.delayed, keys.inflight, keys.leases, keys.paused],
        args=[1, 100, "dead-worker:token", 10],
    )
    time.sleep(0.2)
    report = backend.maintain()
    assert report.requeued_unstarted == 1
    runs = backend.acquire(["unclaimed"], 2, worker())
    assert [r.task_id for r in runs] == [first, second]
    assert all(r.attempt == 1 for r in runs)


def test_renew_recreates_a_lease_redis_lost_and_reports_a_taken_one(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    enqueue(service, 2, queue="renew")
    w = worker()
    run_a, run_b = backend.acquire(["renew"], 2, w)
    keys = backend.keys.queue("renew")
    backend.redis.delete(keys.leases, keys.inflight)  # Redis lost its data
    backend.redis.hset(keys.leases, str(run_b.run_id), "someone-else:tok")
    report = backend.renew([run_a, run_b], w)
    assert report.lost == [run_b.run_id]
    assert (
        backend.redis.hget(keys.leases, str(run_a.run_id))
        == lease_value(w.id, run_a.lease_token).encode()
    )
    assert backend.redis.zscore(keys.inflight, str(run_a.run_id)) is not None


def test_delayed_runs_wait_for_their_due_time(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    (task_id,) = enqueue(service, queue="later", delay=0.6)
    assert backend.counts(["later"])[0].delayed == 1
    assert backend.acquire(["later"], 1, worker()) == []
    time.sleep(0.7)
    runs = backend.acquire(["later"], 1, worker())
    assert [r.task_id for r in runs] == [task_id]
    assert runs[0].started_at is not None
    assert (runs[0].started_at - runs[0].enqueued_at).total_seconds() >= 0.6


def test_a_paused_queue_gives_nothing_until_resumed(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    enqueue(service, queue="p")
    service.pause("p")
    assert backend.acquire(["p"], 1, worker()) == []
    assert backend.counts(["p"])[0].paused
    service.resume("p")
    assert len(backend.acquire(["p"], 1, worker())) == 1


def test_wait_for_work_wakes_on_a_push_within_milliseconds(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    backend.prepare_wait(["wake"])
    assert backend.acquire(["wake"], 1, worker()) == []
    woke: list[float] = []

    def waiter() -> None:
        backend.wait_for_work(["wake"], 10.0)
        woke.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    pushed = time.monotonic()
    enqueue(service, queue="wake")
    thread.join(5)
    assert woke, "wait_for_work did not return"
    # a correctness bound (it returned because of the push, not the 10 s timeout)
    assert woke[0] - pushed < 5.0


def test_reconcile_rebuilds_redis_from_the_store(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    ready_ids = enqueue(service, 3, queue="rebuild")
    delayed_ids = enqueue(service, 2, queue="rebuild", delay=60)
    # a dead-lettered task
    (dead,) = enqueue(service, queue="rebuild", max_retries=0, retry="none")
    w = worker()
    runs = backend.acquire(["rebuild"], 10, w)
    dead_run = next(r for r in runs if r.task_id == dead)
    backend.finish([outcomes(service).failed(dead_run, RuntimeError("boom"))], w)
    backend.hand_back([r for r in runs if r.task_id != dead], w)
    service.pause("rebuild")
    services.delete_prefix(backend.redis, backend.settings.redis_prefix)  # Redis loses everything
    time.sleep(1.1)  # reconcile leaves alone what is younger than the outbox grace + 1 s
    report = backend.maintain(reconcile=True)
    counts = backend.counts(["rebuild"])[0]
    assert (counts.ready, counts.delayed, counts.dlq, counts.paused) == (3, 2, 1, True)
    assert report.reconciled_missing == 6
    # stale entries (an unknown run, a finished run) are removed on the next reconcile
    keys = backend.keys.queue("rebuild")
    backend.redis.rpush(keys.ready, str(uuid.uuid4()), str(dead_run.run_id))
    backend.redis.delete(backend.keys.lock("reconcile"))
    report = backend.maintain(reconcile=True)
    assert report.reconciled_stale == 2
    assert backend.counts(["rebuild"])[0].ready == 3
    service.resume("rebuild")
    fetched = backend.acquire(["rebuild"], 10, worker())
    assert sorted(r.task_id for r in fetched) == sorted(ready_ids)
    assert len(delayed_ids) == 2


def test_the_outbox_relay_dispatches_what_a_producer_did_not(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    backend.maintain()  # the first pass builds the queues (and their marker) from the store
    item = service.prepare(EnqueueSpec(name="example.echo", payload={}, queue="relay"))
    store.insert_tasks([item])  # committed; the producer died before dispatch
    assert backend.counts(["relay"])[0].ready == 0
    report = backend.maintain()
    assert report.relayed == 1
    assert backend.counts(["relay"])[0].ready == 1
    assert store.relay_outbox(backend.dispatch, grace=0) == 0  # the row is gone


def test_concurrent_dedup_enqueues_create_one_task(service: TaskService, store: Store) -> None:
    results = []
    barrier = threading.Barrier(20)

    def produce() -> None:
        barrier.wait()
        results.append(
            service.enqueue(EnqueueSpec(name="example.echo", payload={}, dedup_key="k1"))
        )

    threads = [threading.Thread(target=produce) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert len(store.list_tasks()) == 1


def test_two_concurrent_replays_create_one_new_run(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    (task_id,) = enqueue(service, queue="replay", max_retries=0)
    w = worker()
    (run,) = backend.acquire(["replay"], 1, w)
    backend.finish([outcomes(service).failed(run, RuntimeError("x"))], w)
    assert store.get_task(task_id).status == "failed"
    barrier = threading.Barrier(2)
    replayed = []

    def replay() -> None:
        barrier.wait()
        replayed.append(service.replay("replay", [task_id]).replayed)

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in replayed) == [0, 1]
    runs = store.get_task(task_id).runs
    assert [(r.attempt, r.status) for r in runs] == [(1, "failed"), (2, "queued")]
    assert backend.counts(["replay"])[0].dlq == 0


# --- Redis losing its data (issue 12, defect 8) and the database clock deciding (defect 14) ---


def test_a_flush_is_rebuilt_by_the_next_maintenance_pass_with_the_leases_of_running_runs(
    service: TaskService, backend: RedisQueueBackend, store: Store, redis_prefix: str
) -> None:
    backend.maintain()  # the first pass builds the queues and their marker
    enqueue(service, 4, queue="flushed")
    enqueue(service, 2, queue="flushed", delay=30)
    dead = worker(ttl=0.5)  # fetches one run, then never renews: its process died
    (running,) = backend.acquire(["flushed"], 1, dead)
    backend.outbox.flush()  # the producer's outbox deletes: the relay has nothing to send
    services.delete_prefix(backend.redis, redis_prefix)  # a flush: every key of ours gone

    report = backend.maintain()
    assert report.rebuilt == 1
    assert report.leases_restored == 1
    counts = backend.counts(["flushed"])[0]
    assert (counts.ready, counts.delayed, counts.inflight) == (3, 2, 1)
    assert backend.maintain().rebuilt == 0  # the marker is back: nothing more to do

    # the lease written back lets the reaper find the run of the worker that died
    time.sleep(0.6)
    lost = backend.maintain()
    assert [item.run_id for item in lost.lost] == [running.run_id]
    assert [r.status for r in store.get_task(running.task_id).runs] == ["lost", "queued"]


def test_processes_noticing_one_flush_together_rebuild_it_once(
    service: TaskService,
    backend: RedisQueueBackend,
    store: Store,
    settings: Settings,
    redis_prefix: str,
) -> None:
    others = [RedisQueueBackend.from_settings(store, settings) for _ in range(3)]
    try:
        backend.maintain()
        enqueue(service, 5, queue="together")
        backend.outbox.flush()  # the producer's outbox deletes: the relay has nothing to send
        services.delete_prefix(backend.redis, redis_prefix)
        reports = []
        threads = [
            threading.Thread(target=lambda b=b: reports.append(b.maintain()))
            for b in [backend, *others]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # one rebuilt; the others found the lock taken or the marker back, and no run was
        # placed twice
        assert sum(r.rebuilt for r in reports) == 1
        ready = backend.redis.lrange(backend.keys.queue("together").ready, 0, -1)
        assert len(ready) == len(set(ready)) == 5
    finally:
        for other in others:
            other.close()


def test_a_restarted_redis_that_reloaded_an_old_snapshot_is_rebuilt(
    pg_url: str,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    """The marker survives in the snapshot; the server's new run id gives the restart away."""
    from taskrt.db.engine import create_engine
    from taskrt.runtime import Runtime
    from taskrt.settings import load_settings
    from tests.chaos.servers import free_port

    port = free_port()
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path), "--dbfilename", "dump.rdb",
    ]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(port=port)
        for _ in range(500):
            try:
                if probe.ping():
                    return proc
            except redis.RedisError:
                time.sleep(0.01)
        raise AssertionError("the private redis-server did not start")

    proc = start()
    settings = load_settings(
        database_url=pg_url,
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
        outbox_grace=0.0,
    )
    store = Store(create_engine(settings.database_url), outbox=True)
    private = RedisQueueBackend.from_settings(store, settings)
    svc = TaskService(Runtime.load(settings), store, private)
    try:
        private.maintain()
        enqueue(svc, 2, queue="snap")
        private.redis.save()  # the snapshot holds the marker and two runs
        enqueue(svc, 1, queue="snap")  # written after it: lost with the restart
        private.outbox.flush()
        first_run_id = private.guard.server_run_id()
        private.redis.shutdown(nosave=True)
        proc.wait(10)
        proc = start()
        assert private.guard.server_run_id() != first_run_id
        assert private.counts(["snap"])[0].ready == 2  # the old snapshot, marker included
        assert private.guard.loss() is not None
        report = private.maintain()
        assert report.rebuilt == 1
        assert private.counts(["snap"])[0].ready == 3
    finally:
        private.close()
        store.dispose()
        proc.kill()
        proc.wait(10)


def test_a_claim_refuses_a_run_not_due_by_the_database_clock_and_spends_nothing(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    (task_id,) = enqueue(service, queue="early", delay=5)
    run_id = store.get_task(task_id).runs[0].id
    k = backend.keys.queue("early")
    # what a Redis whose clock runs ahead does: the run leaves the delayed set too soon
    backend.redis.zrem(k.delayed, str(run_id))
    backend.redis.rpush(k.ready, str(run_id))
    assert backend.acquire(["early"], 10, worker()) == []

    (run,) = store.get_task(task_id).runs
    assert (run.status, run.attempt, run.started_at) == ("queued", 1, None)
    score = backend.redis.zscore(k.delayed, str(run_id))
    seconds, micros = backend.redis.time()
    left = score - (seconds * 1000 + micros // 1000) if score is not None else None
    assert left is not None
    assert 3_000 < left <= 5_000, left  # back in delayed for the time it has left
    counts = backend.counts(["early"])[0]
    assert (counts.ready, counts.inflight) == (0, 0)
