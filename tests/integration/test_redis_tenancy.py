"""Redis keys per (tenant, queue) and the fair fetch against real Redis and PostgreSQL
(issue 16)."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from taskrt.ids import uuid7
from taskrt.queue.keyspace import Keyspace
from taskrt.queue.redis_backend import RedisQueueBackend
from taskrt.queue.scripts import SCRIPT_NAMES, script_source
from taskrt.records import WorkerIdentity
from taskrt.service import EnqueueSpec, TaskService
from taskrt.store import Store
from taskrt.worker.fairness import TenantRotation

pytestmark = pytest.mark.services


def worker() -> WorkerIdentity:
    return WorkerIdentity(id=uuid7(), lease_ttl=30.0)


def enqueue(service: TaskService, n: int, queue: str, tenant: str = "default") -> list[uuid.UUID]:
    specs = [EnqueueSpec(name="example.echo", payload={"i": i}, queue=queue) for i in range(n)]
    return [r.id for r in service.enqueue_many(specs, tenant=tenant)]


@pytest.fixture
def acme(store: Store) -> str:
    store.create_tenant("acme")
    return "acme"


def keys_of(backend: RedisQueueBackend) -> set[str]:
    prefix = backend.settings.redis_prefix
    return {k.decode()[len(prefix) :] for k in backend.redis.scan_iter(match=f"{prefix}*")}


def test_the_default_tenants_keys_are_byte_identical_to_single_tenant_ones() -> None:
    k = Keyspace("p:").queue("emails")
    assert (k.ready, k.delayed, k.inflight, k.leases, k.dlq, k.paused, k.wake) == (
        "p:queue:{emails}:ready",
        "p:queue:{emails}:delayed",
        "p:queue:{emails}:inflight",
        "p:queue:{emails}:leases",
        "p:queue:{emails}:dlq",
        "p:queue:{emails}:paused",
        "p:taskrt:wake:emails",
    )
    a = Keyspace("p:").queue("acme/emails")
    assert (a.ready, a.wake) == ("p:queue:{acme/emails}:ready", "p:taskrt:wake:acme/emails")
    for bad in ("a/b/c", "x{y}", "x}"):
        with pytest.raises(ValueError, match="not a queue address"):
            Keyspace().queue(bad)


def test_a_default_tenant_dispatch_writes_todays_keys_and_registry(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    enqueue(service, 2, "q")
    keys = keys_of(backend)
    assert "queue:{q}:ready" in keys
    assert not any("default" in key for key in keys)
    assert backend.redis.smembers(backend.keys.queues) == {b"q"}
    assert backend.redis.llen(f"{backend.settings.redis_prefix}queue:{{q}}:ready") == 2


def test_another_tenants_queue_has_keys_of_its_own(
    service: TaskService, backend: RedisQueueBackend, acme: str
) -> None:
    enqueue(service, 2, "q")
    (acme_task,) = enqueue(service, 1, "q", tenant=acme)
    keys = keys_of(backend)
    assert {"queue:{q}:ready", "queue:{acme/q}:ready"} <= keys
    assert backend.redis.smembers(backend.keys.queues) == {b"q", b"acme/q"}
    # the default tenant's fetch never sees acme's run, and the other way round
    w = worker()
    mine = backend.acquire(["q"], 10, w)
    assert len(mine) == 2
    assert all(r.tenant == "default" for r in mine)
    (theirs,) = backend.acquire(["acme/q"], 10, w)
    assert theirs.task_id == acme_task
    assert theirs.tenant == "acme"
    assert theirs.address == "acme/q"
    assert backend.counts(["acme/q"])[0].inflight == 1
    # finishing settles on acme's keys
    from taskrt.outcomes import OutcomeBuilder

    outcome = OutcomeBuilder(service.registry, traceback_limit=100).succeeded(theirs, None)
    assert len(backend.finish([outcome], w).won) == 1
    assert backend.counts(["acme/q"])[0].inflight == 0
    counts = {(c.tenant, c.name): c for c in backend.counts()}
    assert set(counts) == {("default", "q"), ("acme", "q")}


def test_pause_of_one_tenants_queue_leaves_the_others(
    service: TaskService, backend: RedisQueueBackend, acme: str
) -> None:
    enqueue(service, 1, "q")
    enqueue(service, 1, "q", tenant=acme)
    backend.pause("acme/q")
    assert backend.acquire(["acme/q"], 10, worker()) == []
    assert len(backend.acquire(["q"], 10, worker())) == 1
    backend.resume("acme/q")
    assert len(backend.acquire(["acme/q"], 10, worker())) == 1


def test_no_lua_script_builds_a_key_name() -> None:
    for name in SCRIPT_NAMES:
        code = "\n".join(
            line for line in script_source(name).splitlines() if not line.lstrip().startswith("--")
        )
        assert "queue:" not in code, name
        assert "taskrt:" not in code, name
        # every key a script touches comes from KEYS
        for call in re.findall(r"redis\.call\('(\w+)',\s*([^,)]+)", code):
            command, first = call
            if command.upper() in {"TIME", "PUBLISH"}:
                continue
            assert first.strip().startswith("KEYS["), (name, command, first)


def test_a_single_tenant_fetch_makes_todays_script_calls(
    service: TaskService, backend: RedisQueueBackend
) -> None:
    enqueue(service, 3, "high")
    enqueue(service, 3, "low")
    calls: list[tuple[list[str], list[object]]] = []
    real = backend.index.scripts.fetch

    class Spy:
        sha = real.sha

        def __call__(self, *, keys: list[str], args: list[object], client: object = None) -> object:
            calls.append((list(keys), list(args)))
            return real(keys=keys, args=args)

    backend.index.scripts.fetch = Spy()  # type: ignore[assignment]
    plan = TenantRotation(["default"]).plan(["high", "low"], 4)
    assert len(backend.lease(plan, 4, worker())) == 4
    # one call per queue until the batch is full, asking for what is still wanted: as always
    assert [(k[0].rsplit(":", 2)[-2], a[0]) for k, a in calls] == [("{high}", 4), ("{low}", 1)]
    calls.clear()
    assert len(backend.lease(["high", "low"], 4, worker())) == 2  # plain names: the same path
    assert [a[0] for _k, a in calls] == [4, 4]


def test_pass_two_fills_a_batch_from_the_only_busy_tenant_and_hints_the_empty(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    store.create_tenant("a")
    store.create_tenant("b")
    store.create_tenant("c")
    enqueue(service, 10, "q", tenant="a")
    enqueue(service, 1, "q", tenant="c")
    rotation = TenantRotation(["a", "b", "c"])
    leased = backend.lease(rotation.plan(["q"], 9), 9, worker())
    got = [addr for addr, _raw in leased.entries]
    assert len(got) == 9
    assert got.count("c/q") == 1
    assert got.count("a/q") == 8
    assert leased.empty == frozenset({"b/q"})  # c had work this time: asked again next time
    rotation.hint_empty(leased.empty)
    assert {a for a, _ in rotation.plan(["q"], 9)} == {"a/q", "c/q"}
    leased = backend.lease(rotation.plan(["q"], 9), 9, worker())
    assert [addr for addr, _raw in leased.entries] == ["a/q", "a/q"]
    assert leased.empty == frozenset({"c/q"})


def test_two_busy_tenants_share_each_batch(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    store.create_tenant("a")
    store.create_tenant("b")
    enqueue(service, 40, "q", tenant="a")
    enqueue(service, 40, "q", tenant="b")
    rotation = TenantRotation(["a", "b"])
    for _ in range(5):
        leased = backend.lease(rotation.plan(["q"], 4), 4, worker())
        got = [addr for addr, _raw in leased.entries]
        assert sorted(got) == ["a/q", "a/q", "b/q", "b/q"]


def woken(
    backend: RedisQueueBackend, addrs: list[str], timeout: float, *, all_tenants: bool = False
) -> frozenset[str]:
    """The addresses wake-ups named within ``timeout`` (a wait also returns early on the
    subscription's own confirmation, which names none)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        got = backend.wait_for_work(addrs, max(left, 0.0), all_tenants=all_tenants)
        if got or left <= 0:
            return got


def test_an_all_tenants_worker_hears_every_tenants_wake_ups(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    backend.prepare_wait([], all_tenants=True)
    store.create_tenant("late")  # created after the subscription: no resubscribe needed
    enqueue(service, 1, "q", tenant="late")
    assert woken(backend, [], 5.0, all_tenants=True) == frozenset({"late/q"})
    enqueue(service, 1, "other")
    assert woken(backend, [], 5.0, all_tenants=True) == frozenset({"other"})


def test_a_named_worker_hears_only_its_addresses(
    service: TaskService, backend: RedisQueueBackend, acme: str
) -> None:
    backend.prepare_wait(["acme/q"])
    enqueue(service, 1, "q")  # the default tenant's q: not ours
    assert woken(backend, ["acme/q"], 0.5) == frozenset()
    enqueue(service, 1, "q", tenant=acme)
    assert woken(backend, ["acme/q"], 5.0) == frozenset({"acme/q"})


def test_maintenance_promotes_and_reaps_every_tenants_queues(
    service: TaskService, backend: RedisQueueBackend, acme: str
) -> None:
    specs = [EnqueueSpec(name="example.echo", payload={}, queue="q", delay=0.2)]
    service.enqueue_many(specs, tenant=acme)
    service.enqueue_many(specs)
    time.sleep(0.4)
    report = backend.maintain()
    assert report.promoted == 2
    short = WorkerIdentity(id=uuid7(), lease_ttl=0.3)
    (run,) = backend.acquire(["acme/q"], 10, short)
    time.sleep(0.5)
    report = backend.maintain()
    assert report.reaped_lost == 1
    assert report.lost[0].run_id == run.run_id
    assert backend.counts(["acme/q"])[0].ready == 1  # the retry, back in acme's queue
    (retry,) = backend.acquire(["acme/q"], 10, worker())
    assert retry.tenant == "acme"
    assert retry.attempt == 2


def test_a_rebuild_after_redis_lost_its_data_puts_each_tenants_runs_back_in_its_keys(
    service: TaskService, backend: RedisQueueBackend, acme: str
) -> None:
    backend.maintain()  # the first pass writes the marker (a rebuild of nothing)
    enqueue(service, 2, "q")
    enqueue(service, 3, "q", tenant=acme)
    (running,) = backend.acquire(["acme/q"], 1, worker())
    prefix = backend.settings.redis_prefix
    backend.redis.delete(*backend.redis.keys(f"{prefix}*"))  # Redis lost everything
    report = backend.maintain()
    assert report.rebuilt == 1
    assert report.leases_restored == 1
    counts = {(c.tenant, c.name): (c.ready, c.inflight) for c in backend.counts()}
    assert counts == {("default", "q"): (2, 0), ("acme", "q"): (2, 1)}
    assert backend.redis.zscore(backend.keys.queue("acme/q").inflight, str(running.run_id))
    assert backend.redis.smembers(backend.keys.queues) == {b"q", b"acme/q"}
    got = backend.acquire(["acme/q"], 10, worker())
    assert {r.tenant for r in got} == {"acme"}
    assert len(got) == 2
