"""The Redis backend when a claim cannot be made or was undone (issue 12, defects 10 and 11),
against real Redis and PostgreSQL: the runs go back to their queue at once, in their order."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from taskrt.db.engine import create_engine
from taskrt.exceptions import BackendUnavailableError
from taskrt.ids import uuid7
from taskrt.outcomes import OutcomeBuilder
from taskrt.queue.redis_backend import RedisQueueBackend
from taskrt.records import WorkerIdentity
from taskrt.service import EnqueueSpec, TaskService
from taskrt.settings import Settings
from taskrt.store import Store
from tests.chaos.servers import free_port

pytestmark = pytest.mark.services


def _enqueue(service: TaskService, n: int) -> list[uuid.UUID]:
    specs = [EnqueueSpec(name="example.echo", payload={"i": i}, queue="q") for i in range(n)]
    return [r.id for r in service.enqueue_many(specs)]


def _ready(backend: RedisQueueBackend) -> list[bytes]:
    return list(backend.redis.lrange(backend.keys.queue("q").ready, 0, -1))


def test_a_claim_the_store_cannot_make_puts_its_runs_back_in_order(
    service: TaskService, backend: RedisQueueBackend, settings: Settings
) -> None:
    _enqueue(service, 3)
    before = _ready(backend)
    # the same Redis, and a database that is not there (nothing listens on the port)
    away = Store(
        create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"), outbox=True
    )
    cut_off = RedisQueueBackend(away, backend.redis, settings)
    worker = WorkerIdentity(id=uuid7(), lease_ttl=30)
    leased = cut_off.lease(["q"], 2, worker)
    assert len(leased) == 2
    try:
        with pytest.raises(BackendUnavailableError):
            cut_off.claim(leased, worker)
    finally:
        away.dispose()
    counts = backend.counts(["q"])[0]
    assert counts.inflight == 0, (
        "the failed claim left its runs in flight until their leases expire"
    )
    assert _ready(backend) == before  # back at the head, in their order
    # and the next claim by a worker that reaches the store takes them, attempt 1
    runs = backend.acquire(["q"], 3, WorkerIdentity(id=uuid7(), lease_ttl=30))
    assert [r.attempt for r in runs] == [1, 1, 1]


def test_a_claim_undone_in_the_store_sends_its_run_back_to_its_queue(
    service: TaskService, backend: RedisQueueBackend, store: Store
) -> None:
    (task_id,) = _enqueue(service, 1)
    worker = WorkerIdentity(id=uuid7(), lease_ttl=30)
    (run,) = backend.acquire(["q"], 1, worker)
    # what a crash does to a claim committed without waiting for the WAL flush
    with store.transaction() as conn:
        conn.execute(
            sa.text(
                "UPDATE task_runs SET status = 'queued', worker_id = NULL, lease_token = NULL, "
                "started_at = NULL, lease_expires_at = NULL WHERE id = :id"
            ),
            {"id": run.run_id},
        )
    finish = OutcomeBuilder(service.registry, traceback_limit=2000).succeeded(run, {"ok": 1})
    report = backend.finish([finish], worker)
    assert not report.won
    assert [f.run.run_id for f in report.unclaimed] == [run.run_id]
    assert _ready(backend) == [str(run.run_id).encode()], "the run is in no queue"
    assert backend.counts(["q"])[0].inflight == 0
    (again,) = backend.acquire(["q"], 1, WorkerIdentity(id=uuid7(), lease_ttl=30))
    assert (again.run_id, again.attempt) == (run.run_id, 1)
    assert service.get(task_id).status == "running"
