"""The queue-backend contract for a tenant other than ``default`` (queue addresses
``tenant/queue``), on Redis, PostgreSQL and SQLite: the same queue name in two tenants is two
queues, and everything a run does (claim, retry, dead letter, pause, fair plans) stays in its
tenant's queue."""

from __future__ import annotations

import uuid

import pytest

from taskrt.exceptions import NonRetryableError
from taskrt.ids import uuid7
from taskrt.outcomes import OutcomeBuilder
from taskrt.records import WorkerIdentity
from taskrt.service import EnqueueSpec
from taskrt.worker.fairness import TenantRotation
from tests.conformance.conftest import Stack

pytestmark = pytest.mark.services


def worker() -> WorkerIdentity:
    return WorkerIdentity(id=uuid7(), lease_ttl=30.0)


def enqueue(stack: Stack, n: int, tenant: str, name: str = "example.echo") -> list[uuid.UUID]:
    specs = [EnqueueSpec(name=name, payload={"i": i}, queue="q") for i in range(n)]
    return [r.id for r in stack.service.enqueue_many(specs, tenant=tenant)]


@pytest.fixture
def tenants(stack: Stack) -> Stack:
    stack.store.create_tenant("acme")
    return stack


def test_one_queue_name_in_two_tenants_is_two_queues(tenants: Stack) -> None:
    stack = tenants
    theirs = enqueue(stack, 2, "default")
    mine = enqueue(stack, 3, "acme")
    w = worker()
    runs = stack.backend.acquire(["acme/q"], 10, w)
    assert sorted(r.task_id for r in runs) == sorted(mine)
    assert {(r.tenant, r.queue, r.address) for r in runs} == {("acme", "q", "acme/q")}
    other = stack.backend.acquire(["q"], 10, w)
    assert sorted(r.task_id for r in other) == sorted(theirs)
    assert {r.tenant for r in other} == {"default"}


def test_a_retry_and_a_dead_letter_stay_in_their_tenant(tenants: Stack) -> None:
    stack = tenants
    (task_id,) = enqueue(stack, 1, "acme")
    (retried,) = enqueue(stack, 1, "acme")
    w = worker()
    runs = {r.task_id: r for r in stack.backend.acquire(["acme/q"], 10, w)}
    build = OutcomeBuilder(stack.service.registry, traceback_limit=100)
    dead = build.failed(runs[task_id], NonRetryableError("no"))
    again = build.failed(runs[retried], RuntimeError("once more"))
    report = stack.backend.finish([dead, again], w)
    assert len(report.won) == 2
    assert [(e.tenant, e.queue) for e in report.retries] == [("acme", "q")]
    assert stack.backend.acquire(["q"], 10, w) == []  # not in the default tenant's q
    counts = {(c.tenant, c.name): c for c in stack.backend.counts(["acme/q", "q"])}
    assert counts[("acme", "q")].dlq == 1
    assert counts[("default", "q")].dlq == 0


def test_pausing_a_tenants_queue_leaves_the_same_name_elsewhere(tenants: Stack) -> None:
    stack = tenants
    enqueue(stack, 1, "default")
    enqueue(stack, 1, "acme")
    stack.service.pause("q", tenant="acme")
    w = worker()
    assert stack.backend.acquire(["acme/q"], 10, w) == []
    assert len(stack.backend.acquire(["q"], 10, w)) == 1
    stack.service.resume("q", tenant="acme")
    assert len(stack.backend.acquire(["acme/q"], 10, w)) == 1


def test_a_fair_plan_takes_from_both_tenants(tenants: Stack) -> None:
    stack = tenants
    enqueue(stack, 10, "default")
    enqueue(stack, 10, "acme")
    rotation = TenantRotation(["default", "acme"])
    w = worker()
    for _ in range(3):
        runs = stack.backend.acquire(rotation.plan(["q"], 4), 4, w)
        assert sorted(r.tenant for r in runs) == ["acme", "acme", "default", "default"]
    # one tenant empty: the batch fills from the other (pass 2)
    enqueue(stack, 6, "acme")
    runs = stack.backend.acquire(rotation.plan(["q"], 8), 8, w)
    assert len(runs) == 8
