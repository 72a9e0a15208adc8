"""The outbox is the store's construction-time setting: a store built with ``outbox=True``
writes an outbox row with every queued run it creates (first runs, retries, replays), one built
without writes none, whichever path the write takes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from taskrt.db.engine import create_engine
from taskrt.enqueue import EnqueueSpec
from taskrt.exceptions import ConfigurationError
from taskrt.ids import uuid7
from taskrt.queue.redis_backend import RedisQueueBackend
from taskrt.records import RunFinish, TaskInsert
from taskrt.service import TaskService
from taskrt.settings import Settings
from taskrt.store import Store


@pytest.fixture(params=[False, True], ids=["no-outbox", "outbox"])
def plain_store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Store]:
    handle = Store(create_engine(settings.database_url), outbox=request.param)
    yield handle
    handle.dispose()


def _outbox_rows(store: Store) -> int:
    with store.connection() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one())


def _items(service: TaskService, count: int, dedup_key: str | None = None) -> list[TaskInsert]:
    spec = EnqueueSpec(name="example.echo", payload={}, queue="ob", dedup_key=dedup_key)
    return [service.prepare(spec) for _ in range(count)]


def test_inserts_write_outbox_rows_only_when_the_store_keeps_an_outbox(
    plain_store: Store, service: TaskService
) -> None:
    expected = 3 if plain_store.outbox else 0
    plain_store.insert_tasks(_items(service, 2))  # one statement (nothing can conflict)
    plain_store.insert_tasks(_items(service, 1, dedup_key="k"))  # the dedup transaction
    assert _outbox_rows(plain_store) == expected


def test_retries_and_replays_write_outbox_rows_only_when_the_store_keeps_an_outbox(
    plain_store: Store, service: TaskService
) -> None:
    (item,) = _items(service, 1)
    (created,) = plain_store.insert_tasks([item])
    assert created.dispatch is not None
    with plain_store.transaction() as conn:
        conn.execute(sa.text("DELETE FROM outbox"))
    worker = uuid7()
    (run,) = plain_store.claim_runs(
        [created.dispatch.run_id], worker_id=worker, lease_token="t1", lease_ttl=30
    )
    report = plain_store.finish_runs([RunFinish(run=run, status="failed", retry_delay=0.0)])
    assert len(report.retries) == 1
    assert _outbox_rows(plain_store) == (1 if plain_store.outbox else 0)
    (retry,) = plain_store.claim_runs(
        [report.retries[0].run_id], worker_id=worker, lease_token="t2", lease_ttl=30
    )
    plain_store.finish_runs([RunFinish(run=retry, status="failed")])  # dead-lettered
    won, _entries = plain_store.replay_tasks("ob", [item.id])
    assert won == [item.id]
    assert _outbox_rows(plain_store) == (2 if plain_store.outbox else 0)


def test_the_redis_backend_refuses_a_store_without_an_outbox(settings: Settings) -> None:
    # a producer dying between its commit and its dispatch would leave a run nothing relays
    store = Store(create_engine(settings.database_url))
    try:
        with pytest.raises(ConfigurationError, match="outbox=True"):
            RedisQueueBackend.from_settings(store, settings)
    finally:
        store.dispose()
