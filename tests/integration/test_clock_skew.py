"""One clock decides every due time: the database's (issue 12, defect 14).

PostgreSQL runs privately here with its wall clock a minute ahead of, or behind, the Redis
server's (libfaketime; the monotonic clock left alone). Delayed runs, retries and runs the
rebuild puts back must start neither before their time by the database clock nor a skew late.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from taskrt.db.engine import create_engine
from taskrt.ids import uuid7
from taskrt.queue.redis_backend import RedisQueueBackend
from taskrt.records import ClaimedRun, RunFinish, WorkerIdentity
from taskrt.runtime import Runtime
from taskrt.service import EnqueueSpec, TaskService
from taskrt.settings import load_settings
from taskrt.store import Store
from tests.chaos.servers import PostgresServer, migrated_postgres
from tests.support import services

pytestmark = pytest.mark.services

TEMPLATE = "taskrt_skew_template"
SKEW = 60.0
DELAY = 2.0
SLACK = 1.5  # polling, two round trips and a loaded CI machine; far below the 60 s skew


@pytest.fixture(scope="module")
def skewed_postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster (restarted with the skew each test asks for)."""
    with migrated_postgres(TEMPLATE) as server:
        yield server


@pytest.fixture(params=[SKEW, -SKEW], ids=["database-ahead", "database-behind"])
def skewed(
    request: pytest.FixtureRequest,
    skewed_postgres: PostgresServer,
    redis_url: str,
    redis_prefix: str,
) -> Iterator[tuple[TaskService, RedisQueueBackend, Store]]:
    """Service, backend and store on a database whose clock is a minute off Redis's."""
    skewed_postgres.stop()
    skewed_postgres.start(skew=request.param)
    url = skewed_postgres.create_database(f"skew_{uuid.uuid4().hex[:10]}", template=TEMPLATE)
    settings = load_settings(
        database_url=url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
        outbox_grace=0.0,
    )
    store = Store(create_engine(settings.database_url), outbox=True)
    backend = RedisQueueBackend.from_settings(store, settings)
    try:
        _assert_skewed(store, backend.redis, request.param)
        yield TaskService(Runtime.load(settings), store, backend), backend, store
    finally:
        backend.close()
        store.dispose()


def _assert_skewed(store: Store, client: redis.Redis, skew: float) -> None:
    seconds, micros = client.time()
    apart = store.now().timestamp() - (seconds + micros / 1e6)
    assert abs(apart - skew) < 5, f"the database clock is {apart:+.1f} s off Redis's"


def _worker() -> WorkerIdentity:
    return WorkerIdentity(id=uuid7(), lease_ttl=30.0)


def _first_fetch(
    backend: RedisQueueBackend, queue: str, timeout: float
) -> tuple[list[ClaimedRun], float]:
    """Fetch until something comes; (runs, seconds it took)."""
    began = time.monotonic()
    while True:
        runs = backend.acquire([queue], 10, _worker())
        elapsed = time.monotonic() - began
        if runs or elapsed > timeout:
            return runs, elapsed
        time.sleep(0.05)


def _enqueue(service: TaskService, queue: str, **options: object) -> uuid.UUID:
    spec = EnqueueSpec(name="example.echo", payload={}, queue=queue, **options)  # type: ignore[arg-type]
    (task,) = service.enqueue_many([spec])
    return task.id


def test_a_delayed_run_starts_on_time_by_the_database_clock(
    skewed: tuple[TaskService, RedisQueueBackend, Store],
) -> None:
    service, backend, _store = skewed
    began = time.monotonic()
    task_id = _enqueue(service, "skew", delay=DELAY)
    runs, _ = _first_fetch(backend, "skew", DELAY + SLACK + 2)
    waited = time.monotonic() - began
    assert [r.task_id for r in runs] == [task_id], "not fetched within the delay and slack"
    assert waited >= DELAY - 0.05, f"started after {waited:.2f} s, before its {DELAY} s delay"
    assert waited <= DELAY + SLACK, f"started {waited - DELAY:.2f} s late"
    (run,) = runs
    assert run.started_at is not None
    assert run.started_at >= run.available_at


def test_a_retry_waits_its_delay_by_the_database_clock(
    skewed: tuple[TaskService, RedisQueueBackend, Store],
) -> None:
    service, backend, _store = skewed
    task_id = _enqueue(service, "skew-retry")
    (run,), _ = _first_fetch(backend, "skew-retry", 5)
    w = _worker()
    # the lease value belongs to the worker that fetched; finishing as another worker only
    # leaves its Redis lease to the reaper, the store's outcome is fenced by the token
    finish = RunFinish(
        run=run,
        status="failed",
        error_type="Boom",
        error_message="boom",
        reason="error",
        retry_delay=DELAY,
        next_run_id=uuid7(),
    )
    began = time.monotonic()
    report = backend.finish([finish], w)
    assert len(report.won) == 1
    retried, _ = _first_fetch(backend, "skew-retry", DELAY + SLACK + 2)
    waited = time.monotonic() - began
    assert [(r.task_id, r.attempt) for r in retried] == [(task_id, 2)]
    assert DELAY - 0.05 <= waited <= DELAY + SLACK, f"the retry started after {waited:.2f} s"


def test_runs_the_rebuild_puts_back_keep_their_time_left(
    skewed: tuple[TaskService, RedisQueueBackend, Store],
    redis_prefix: str,
) -> None:
    service, backend, _store = skewed
    backend.maintain()  # the first pass builds the queues and their marker
    task_id = _enqueue(service, "skew-lost", delay=DELAY)
    began = time.monotonic()
    services.delete_prefix(backend.redis, redis_prefix)  # Redis loses everything
    report = backend.maintain()
    assert report.rebuilt == 1
    assert backend.counts(["skew-lost"])[0].delayed == 1
    runs, _ = _first_fetch(backend, "skew-lost", DELAY + SLACK + 2)
    waited = time.monotonic() - began
    assert [r.task_id for r in runs] == [task_id]
    assert waited <= DELAY + SLACK, f"started {waited - DELAY:.2f} s late"
    assert runs[0].started_at is not None
    assert runs[0].started_at >= runs[0].available_at
