"""The store keeps tenants apart in every statement (issue 16), on PostgreSQL and
SQLite: tenant ``beta`` asking for ``acme``'s ids finds nothing and changes nothing; what the
store creates from a row (retries, replays, lost runs' next runs, outbox rows, dispatch entries,
audit rows) carries the row's tenant; the queue layer's addresses (``acme/q``) reach exactly
one tenant's queue."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from taskrt.db import models
from taskrt.db.engine import create_engine
from taskrt.exceptions import NotFoundError, UnknownTenantError
from taskrt.ids import uuid7
from taskrt.records import (
    Actor,
    ClaimedRun,
    DispatchEntry,
    RunFinish,
    TaskInsert,
    TaskKind,
    WorkerInfo,
    WorkerStatus,
)
from taskrt.store import Store
from taskrt.store.pruning import TaskSelection

pytestmark = pytest.mark.services

A, B = "acme", "beta"
WORKER = uuid.UUID(int=7)


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated database of each kind (with outbox rows) holding tenants acme and beta."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    handle = Store(create_engine(str(request.getfixturevalue(fixture))), outbox=True)
    with handle.transaction() as conn:
        conn.execute(sa.text("INSERT INTO tenants (name) VALUES ('acme'), ('beta')"))
    yield handle
    handle.dispose()


def item(tenant: str, queue: str = "q", **fields: Any) -> TaskInsert:
    values: dict[str, Any] = {
        "id": uuid7(),
        "run_id": uuid7(),
        "name": "example.echo",
        "queue": queue,
        "payload": {"n": 1},
        "max_retries": 3,
        "retry": "fixed",
        "retry_params": {"delay": 0},
        "tenant": tenant,
        **fields,
    }
    return TaskInsert(**values)


def enqueue(store: Store, tenant: str, queue: str = "q", **fields: Any) -> uuid.UUID:
    (done,) = store.insert_tasks(
        [item(tenant, queue, **fields)], actor=Actor("test", tenant=tenant)
    )
    return done.task_id


def claim(store: Store, *plan: tuple[str, int] | str, limit: int = 10) -> list[ClaimedRun]:
    return store.claim_next(
        list(plan), limit, worker_id=WORKER, lease_token=uuid7().hex, lease_ttl=30
    )


def column(store: Store, sql: str) -> list[Any]:
    with store.connection() as conn:
        return list(conn.execute(sa.text(sql)).scalars())


def tenant_of(store: Store, table: str, key: str, value: uuid.UUID) -> list[str]:
    """The tenants of the rows of ``table`` whose ``key`` is ``value``."""
    rows = models.metadata.tables[table]
    with store.connection() as conn:
        return list(conn.execute(sa.select(rows.c.tenant).where(rows.c[key] == value)).scalars())


def dead_letter(store: Store, tenant: str, queue: str = "q") -> uuid.UUID:
    task_id = enqueue(store, tenant, queue, max_retries=0)
    (run,) = claim(store, f"{tenant}/{queue}" if tenant != "default" else queue)
    store.finish_runs([RunFinish(run=run, status="failed", error_type="Boom")])
    return task_id


# --- writes carry the tenant ----------------------------------------------------------------


def test_inserts_stamp_the_tenant_on_tasks_runs_outbox_audit_and_dispatch_entries(
    store: Store,
) -> None:
    fast = store.insert_tasks([item(A), item(A)], actor=Actor("test", tenant=A))  # one statement
    slow = store.insert_tasks([item(B, dedup_key="k")], actor=Actor("test", tenant=B))  # dedup path
    assert [e.dispatch.tenant for e in fast + slow if e.dispatch] == [A, A, B]
    assert [e.dispatch.address for e in fast + slow if e.dispatch] == ["acme/q", "acme/q", "beta/q"]
    for table in ("tasks", "task_runs", "outbox"):
        assert sorted(column(store, f"SELECT tenant FROM {table}")) == [A, A, B]
    audit = {(r.tenant, r.target_id) for r in store.list_audit(action="task.create", tenant=None)}
    assert audit == {
        (A, str(fast[0].task_id)),
        (A, str(fast[1].task_id)),
        (B, str(slow[0].task_id)),
    }


def test_dedup_keys_are_per_tenant(store: Store) -> None:
    a = enqueue(store, A, dedup_key="once")
    b = enqueue(store, B, dedup_key="once")  # another tenant's live key does not block
    assert a != b
    (again_a,) = store.insert_tasks([item(A, dedup_key="once")])
    (again_b,) = store.insert_tasks([item(B, dedup_key="once")])
    assert (again_a.created, again_a.task_id) == (False, a)
    assert (again_b.created, again_b.task_id) == (False, b)


# --- lookups by id and lists ------------------------------------------------------------------


def test_another_tenants_task_is_not_found_and_is_left_unchanged(store: Store) -> None:
    task_id = enqueue(store, A)
    assert store.get_task(task_id, tenant=A).tenant == A
    assert store.get_task(task_id, tenant=A).runs[0].tenant == A
    with pytest.raises(NotFoundError):
        store.get_task(task_id, tenant=B)
    with pytest.raises(NotFoundError):
        store.get_task(task_id)  # the default tenant is a tenant like any other
    assert store.get_tasks([task_id], tenant=B) == {}
    assert list(store.get_tasks([task_id], tenant=A)) == [task_id]
    assert store.latest_runs([task_id], tenant=B) == {}
    assert list(store.latest_runs([task_id], tenant=A)) == [task_id]
    assert store.list_tasks(tenant=B) == []
    assert [t.id for t in store.list_tasks(tenant=A)] == [task_id]
    with pytest.raises(NotFoundError):
        store.cancel_task(task_id, tenant=B, actor=Actor("b", tenant=B))
    assert store.get_task(task_id, tenant=A).status.value == "queued"
    task, withdrawn = store.cancel_task(task_id, tenant=A)
    assert task.status.value == "cancelled"
    assert withdrawn is not None
    assert withdrawn.address == "acme/q"


def test_dead_letters_and_replays_stay_in_their_tenant(store: Store) -> None:
    task_id = dead_letter(store, A)
    assert store.dead_letters("q", tenant=B) == []
    assert [t.id for t in store.dead_letters("q", tenant=A)] == [task_id]
    assert store.failed_task_ids("beta/q") == []
    assert store.failed_task_ids("q") == []  # the default tenant's queue q
    assert store.failed_task_ids("acme/q") == [task_id]
    assert store.failed_queue_names() == ["acme/q"]
    # beta replaying acme's id: nothing happens, as for an unknown id
    assert store.replay_tasks(None, [task_id], tenant=B) == ([], [])
    assert store.replay_tasks("q", [task_id]) == ([], [])
    assert store.get_task(task_id, tenant=A).status.value == "failed"
    won, entries = store.replay_tasks("q", [task_id], tenant=A, actor=Actor("a", tenant=A))
    assert won == [task_id]
    assert [(e.tenant, e.queue) for e in entries] == [(A, "q")]
    assert column(store, "SELECT tenant FROM task_runs WHERE status = 'queued'") == [A]
    assert tenant_of(store, "outbox", "run_id", entries[0].run_id) == [A]
    assert [r.tenant for r in store.list_audit(action="dlq.replay", tenant=None)] == [A]


# --- the queue layer: claims by address, pauses, counts ---------------------------------------


def test_claim_next_takes_only_the_addressed_tenants_runs(store: Store) -> None:
    a = {enqueue(store, A) for _ in range(3)}
    b = {enqueue(store, B) for _ in range(2)}
    default = enqueue(store, "default")
    assert claim(store, ("gamma/q", 10)) == []
    got_b = claim(store, ("beta/q", 10))
    assert {r.task_id for r in got_b} == b
    assert {(r.tenant, r.address) for r in got_b} == {(B, "beta/q")}
    assert claim(store, ("beta/q", 10)) == []
    # caps per address, in plan order; the limit holds over the whole plan
    got = claim(store, ("acme/q", 1), ("q", 5), ("acme/q", 5), limit=3)
    assert [r.tenant for r in got] == [A, "default", A]
    assert {r.task_id for r in got} <= a | {default}
    # today's call form: bare addresses, capped only by the limit
    assert [r.tenant for r in claim(store, "q", "acme/q")] == [A]


def test_pause_is_per_tenant(store: Store) -> None:
    enqueue(store, A)
    enqueue(store, B)
    store.set_paused("q", True, tenant=A, actor=Actor("ops", tenant=A))
    assert store.paused_queues() == {"acme/q"}
    assert claim(store, ("acme/q", 10)) == []
    assert store.seconds_until_due(["acme/q"]) is None  # paused: nothing will come due
    assert store.seconds_until_due(["beta/q"]) == 0.0
    assert [r.tenant for r in claim(store, ("acme/q", 10), ("beta/q", 10))] == [B]
    assert store.known_queues() == {"acme/q", "beta/q"}
    assert store.tenant_queues(A) == {"q"}
    assert store.tenant_queues() == set()
    counts = {(c.tenant, c.name): c for c in store.queue_counts()}
    assert set(counts) == {(A, "q"), (B, "q")}
    assert counts[(A, "q")].paused
    assert counts[(A, "q")].ready == 1
    assert not counts[(B, "q")].paused
    assert counts[(B, "q")].inflight == 1
    assert [(c.tenant, c.ready) for c in store.queue_counts(tenant=A)] == [(A, 1)]
    assert [(c.tenant, c.paused) for c in store.queue_counts(["beta/q", "q"])] == [
        (B, False),
        ("default", False),
    ]
    (row,) = store.list_audit(action="queue.pause", tenant=None)
    assert (row.tenant, row.target_id) == (A, "q")
    assert store.list_audit(action="queue.pause", tenant=B) == []


def test_reconcile_and_recovery_reads_take_addresses(store: Store) -> None:
    enqueue(store, A)
    enqueue(store, A)
    enqueue(store, B)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert len(store.queued_runs("acme/q", enqueued_before=later)) == 2
    assert len(store.queued_runs("beta/q", enqueued_before=later)) == 1
    assert store.queued_runs("q", enqueued_before=later) == []
    assert store.reconcile_counts("acme/q", later).queued == 2
    assert store.reconcile_counts("q", later).queued == 0
    assert sorted(store.queued_queue_names()) == ["acme/q", "beta/q"]
    (run,) = claim(store, ("beta/q", 1))
    assert [h.run_id for h in store.held_leases("beta/q")] == [run.run_id]
    assert store.held_leases("acme/q") == []
    assert store.held_leases("q") == []


# --- what follows a run keeps its tenant --------------------------------------------------------


def test_a_retry_copies_the_tenant_to_its_run_and_outbox_row(store: Store) -> None:
    enqueue(store, A)
    (run,) = claim(store, ("acme/q", 1))
    assert run.tenant == A
    report = store.finish_runs([RunFinish(run=run, status="failed", retry_delay=0.0)])
    (retry,) = report.retries
    assert (retry.tenant, retry.address) == (A, "acme/q")
    assert tenant_of(store, "task_runs", "id", retry.run_id) == [A]
    assert tenant_of(store, "outbox", "run_id", retry.run_id) == [A]
    (again,) = claim(store, ("acme/q", 1))
    assert (again.run_id, again.tenant) == (retry.run_id, A)


def test_a_lost_runs_next_run_keeps_its_tenant(store: Store) -> None:
    enqueue(store, B)
    store.claim_next([("beta/q", 1)], 1, worker_id=WORKER, lease_token="lost", lease_ttl=0.01)
    time.sleep(0.1)  # the lease runs out
    states = store.expired_running()
    assert [(s.tenant, s.address) for s in states] == [(B, "beta/q")]
    (lost,) = store.mark_lost(states, poison_budget=5)
    assert lost.tenant == B
    assert lost.next_run is not None
    assert lost.next_run.address == "beta/q"
    assert tenant_of(store, "task_runs", "id", lost.next_run.run_id) == [B]
    assert tenant_of(store, "outbox", "run_id", lost.next_run.run_id) == [B]


def test_relayed_outbox_entries_carry_their_tenant(store: Store) -> None:
    enqueue(store, A)
    enqueue(store, B)
    enqueue(store, "default")
    sent: list[DispatchEntry] = []
    assert store.relay_outbox(sent.extend, grace=0.0) == 3
    assert sorted(e.address for e in sent) == ["acme/q", "beta/q", "q"]


# --- schedules, keys, workers, audit ------------------------------------------------------------


def test_another_tenants_schedule_is_not_found(store: Store) -> None:
    template = item(A, kind=TaskKind.SCHEDULED)
    schedule = store.create_schedule(
        template,
        name="nightly",
        cron="0 3 * * *",
        timezone="UTC",
        enabled=True,
        misfire_policy="skip",
        next_fire_at=None,
        actor=Actor("a", tenant=A),
    )
    assert schedule.tenant == A
    assert tenant_of(store, "tasks", "id", template.id) == [A]
    with store.transaction() as conn:
        fire_id = store.record_fire(conn, schedule.id, datetime.now(UTC))
    assert fire_id is not None
    with pytest.raises(NotFoundError):
        store.get_schedule(schedule.id, tenant=B)
    assert store.list_schedules(tenant=B) == []
    assert store.list_schedules() == []
    assert [s.id for s in store.list_schedules(tenant=A)] == [schedule.id]
    assert store.fires(schedule.id, tenant=B) == []
    assert [f.id for f in store.fires(schedule.id, tenant=A)] == [fire_id]
    with pytest.raises(NotFoundError):
        store.update_schedule(schedule.id, {"enabled": False}, tenant=B)
    with pytest.raises(NotFoundError):
        store.delete_schedule(schedule.id, tenant=B)
    assert store.get_schedule(schedule.id, tenant=A).enabled
    assert not store.update_schedule(schedule.id, {"enabled": False}, tenant=A).enabled
    store.delete_schedule(schedule.id, tenant=A)
    assert store.list_schedules(tenant=A) == []
    # the scheduler's own reads stay global: it fires every tenant's schedules
    assert [r.tenant for r in store.list_audit(tenant=A, action="schedule.create")] == [A]


def test_api_keys_belong_to_a_tenant(store: Store) -> None:
    def create(tenant: str, name: str) -> Any:
        return store.create_api_key(
            key_id=uuid7(),
            name=name,
            role="admin",
            prefix=uuid7().hex[:12],
            key_hash="h",
            tenant=tenant,
            actor=Actor("ops", tenant=tenant),
        )

    a = create(A, "a-key")
    create(B, "b-key")
    assert a.tenant == A
    assert a.to_dict()["tenant"] == A
    assert [k.name for k in store.list_api_keys(tenant=A)] == ["a-key"]
    assert store.list_api_keys() == []
    assert {k.name for k in store.list_api_keys(tenant=None)} == {"a-key", "b-key"}
    assert store.api_key_by_prefix(a.prefix) == a  # found by prefix before its tenant is known
    with pytest.raises(NotFoundError):
        store.revoke_api_key(a.id, tenant=B)
    assert not store.api_key_by_prefix(a.prefix).revoked  # type: ignore[union-attr]
    assert store.revoke_api_key(a.id, tenant=A, actor=Actor("ops", tenant=A)).revoked
    with pytest.raises(UnknownTenantError, match="gamma"):
        create("gamma", "g-key")
    assert [r.tenant for r in store.list_audit(action="apikey.revoke", tenant=None)] == [A]


def test_workers_are_listed_to_their_tenant_and_shared_ones_to_operators(store: Store) -> None:
    def register(tenant: str, tenants: tuple[str, ...] | None = None) -> WorkerInfo:
        info = WorkerInfo(
            id=uuid7(),
            name=f"w-{tenant}",
            hostname="h",
            pid=1,
            queues=("q",),
            concurrency=1,
            version="0",
            status=WorkerStatus.ONLINE,
            tenant=tenant,
            tenants=tenants,
        )
        return store.register_worker(info)

    register(A)
    shared = register("*", (A, B))
    assert [w.name for w in store.list_workers(tenant=A)] == ["w-acme"]
    assert store.list_workers(tenant=B) == []
    assert store.list_workers() == []
    everyone = {w.name: w for w in store.list_workers(tenant=None)}
    assert set(everyone) == {"w-acme", "w-*"}
    assert everyone["w-*"].tenants == (A, B) == shared.tenants


def test_audit_rows_are_read_per_tenant(store: Store) -> None:
    enqueue(store, A)
    enqueue(store, B)
    assert [r.tenant for r in store.list_audit(tenant=A)] == [A]
    assert [r.tenant for r in store.list_audit(tenant=B)] == [B]
    assert store.list_audit() == []
    assert len(store.list_audit(tenant=None)) == 2


# --- pruning ----------------------------------------------------------------------------------


def test_a_tenants_prune_takes_only_its_tasks_and_audit_rows(store: Store) -> None:
    for tenant in (A, B):
        for _ in range(2):
            task_id = enqueue(store, tenant)
            store.cancel_task(task_id, tenant=tenant)
    old = datetime.now(UTC) - timedelta(days=10)
    with store.transaction() as conn:
        conn.execute(sa.update(models.tasks).values(finished_at=old))
        conn.execute(sa.update(models.audit_log).values(created_at=old))
    ages = {"cancelled": 86400.0}
    assert store.count_prunable_tasks(TaskSelection(ages)).tasks == 4  # every tenant's
    assert store.count_prunable_tasks(TaskSelection(ages, tenant=A)).tasks == 2
    batch = store.prune_tasks(TaskSelection(ages, tenant=A), limit=100)
    assert batch is not None
    assert batch.tasks == 2
    assert sorted(column(store, "SELECT tenant FROM tasks")) == [B, B]
    assert store.count_prunable_history("audit", 86400.0, tenant=A) == 2
    assert store.prune_history("audit", 86400.0, limit=100, tenant=A) == 2
    assert sorted(column(store, "SELECT tenant FROM audit_log")) == [B, B]
    assert store.prune_history("schedule_fires", 86400.0, limit=100, tenant=A) == 0
