"""Tenants and their quotas against real PostgreSQL and SQLite (issue 16):
the tenants store, exact refusal at the limit with nothing stored, tokens given back by a
rollback, and the unchanged fast path of tenants without quotas."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from taskrt import metrics
from taskrt.backends import open_queue_backend
from taskrt.db.engine import create_engine
from taskrt.db.models import audit_log, tasks, tenant_quota_state
from taskrt.enqueue import EnqueueSpec
from taskrt.exceptions import (
    InvalidStateError,
    QuotaExceededError,
    UnknownTenantError,
    ValidationError,
)
from taskrt.records import Actor
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import load_settings
from taskrt.store import Store
from taskrt.tenants import TenantService

pytestmark = pytest.mark.services

OPERATOR = Actor("cli:operator")


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def service(url: str) -> Iterator[TaskService]:
    """The task service on the SQL queue backend of this database."""
    settings = load_settings(database_url=url, plugins_modules=["tests.support.testkit"])
    store = Store(create_engine(url))
    handle = TaskService(Runtime.load(settings), store, open_queue_backend(settings, store))
    yield handle
    handle.close()


@pytest.fixture
def tenants(service: TaskService) -> TenantService:
    return TenantService(service.store)


def _specs(n: int, **extra: Any) -> list[EnqueueSpec]:
    return [EnqueueSpec(name="example.echo", payload={"i": i}, **extra) for i in range(n)]


def _stored(service: TaskService, tenant: str) -> int:
    with service.store.connection() as conn:
        stmt = sa.select(sa.func.count()).select_from(tasks).where(tasks.c.tenant == tenant)
        return int(conn.execute(stmt).scalar_one())


def _tokens(service: TaskService, tenant: str) -> float:
    with service.store.connection() as conn:
        stmt = sa.select(tenant_quota_state.c.tokens).where(tenant_quota_state.c.tenant == tenant)
        return float(conn.execute(stmt).scalar_one())


def _refusals(tenant: str, quota: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "taskrt_quota_refusals_total", {"tenant": tenant, "quota": quota}
    )
    return value or 0.0


# --- the tenants store ------------------------------------------------------------------------


def test_tenants_are_created_read_changed_and_deleted_with_audit_rows(
    service: TaskService, tenants: TenantService
) -> None:
    created = tenants.create("acme", weight=3, max_queued=10, actor=OPERATOR)
    assert (created.name, created.weight, created.max_queued, created.enqueue_rate) == (
        "acme",
        3,
        10,
        None,
    )
    assert [t.name for t in tenants.all()] == ["acme", "default"]
    changed = tenants.update(
        "acme", {"max_queued": None, "enqueue_rate": "5/second"}, actor=OPERATOR
    )
    assert (changed.weight, changed.max_queued, changed.enqueue_rate) == (3, None, "5/second")
    assert tenants.get("acme") == changed
    tenants.delete("acme", actor=OPERATOR)
    with pytest.raises(UnknownTenantError):
        tenants.get("acme")
    with service.store.connection() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.tenant, audit_log.c.actor)
            .where(audit_log.c.target_type == "tenant")
            .order_by(audit_log.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("tenant.create", "acme", "cli:operator"),
        ("tenant.update", "acme", "cli:operator"),
        ("tenant.delete", "acme", "cli:operator"),
    ]


def test_bad_tenant_input_is_refused_naming_the_field(tenants: TenantService) -> None:
    with pytest.raises(ValidationError) as caught:
        tenants.create("Bad/Name", weight=0, max_queued=-1, enqueue_rate="fast")
    fields = [e["loc"][0] for e in caught.value.errors]
    assert fields == ["name", "weight", "max_queued", "enqueue_rate"]
    with pytest.raises(ValidationError, match="reserved"):
        tenants.create("*")
    with pytest.raises(ValidationError, match="not a tenant setting"):
        tenants.update("default", {"colour": "red"})
    with pytest.raises(ValidationError, match="weight"):
        tenants.update("default", {"weight": None})
    tenants.create("acme")
    with pytest.raises(InvalidStateError, match="already exists"):
        tenants.create("acme")
    with pytest.raises(UnknownTenantError):
        tenants.update("nobody", {"weight": 2})


def test_a_tenant_holding_tasks_or_keys_is_not_deleted(
    service: TaskService, tenants: TenantService
) -> None:
    with pytest.raises(InvalidStateError, match="default tenant"):
        tenants.delete("default")
    tenants.create("acme")
    service.enqueue_many(_specs(1), tenant="acme")
    with pytest.raises(InvalidStateError, match="still holds tasks"):
        tenants.delete("acme")
    assert tenants.get("acme").name == "acme"  # nothing deleted
    with service.store.transaction() as conn:
        conn.execute(sa.delete(tasks).where(tasks.c.tenant == "acme"))
    tenants.delete("acme")
    with pytest.raises(UnknownTenantError):
        tenants.delete("acme")


# --- max-queued ------------------------------------------------------------------------------


def test_max_queued_refuses_exactly_at_the_limit_and_stores_nothing(
    service: TaskService, tenants: TenantService
) -> None:
    tenants.create("q", max_queued=5)
    before = _refusals("q", "max-queued")
    for _ in range(5):
        service.enqueue_many(_specs(1), tenant="q")
    with pytest.raises(QuotaExceededError) as caught:
        service.enqueue_many(_specs(1), tenant="q")
    assert (caught.value.quota, caught.value.limit, caught.value.tenant) == ("max-queued", 5, "q")
    assert str(caught.value).startswith("quota exceeded: tenant 'q'")
    assert _stored(service, "q") == 5
    assert _refusals("q", "max-queued") == before + 1
    # other tenants are not limited by q's quota
    service.enqueue_many(_specs(3))
    assert _stored(service, "default") == 3


def test_a_batch_crossing_max_queued_stores_nothing(
    service: TaskService, tenants: TenantService
) -> None:
    tenants.create("q", max_queued=5)
    service.enqueue_many(_specs(4), tenant="q")
    with pytest.raises(QuotaExceededError):
        service.enqueue_many(_specs(2), tenant="q")
    assert _stored(service, "q") == 4
    service.enqueue_many(_specs(1), tenant="q")
    assert _stored(service, "q") == 5


def test_max_queued_counts_only_waiting_tasks(service: TaskService, tenants: TenantService) -> None:
    tenants.create("q", max_queued=2)
    service.enqueue_many(_specs(2), tenant="q")
    with pytest.raises(QuotaExceededError):
        service.enqueue_many(_specs(1), tenant="q")
    with service.store.transaction() as conn:  # one runs now, one finished: neither waits
        ids = [r[0] for r in conn.execute(sa.select(tasks.c.id).where(tasks.c.tenant == "q"))]
        conn.execute(sa.update(tasks).where(tasks.c.id == ids[0]).values(status="running"))
        conn.execute(sa.update(tasks).where(tasks.c.id == ids[1]).values(status="completed"))
    service.enqueue_many(_specs(2), tenant="q")
    assert _stored(service, "q") == 4


def test_max_queued_zero_refuses_everything(service: TaskService, tenants: TenantService) -> None:
    tenants.create("frozen", max_queued=0)
    with pytest.raises(QuotaExceededError):
        service.enqueue_many(_specs(1), tenant="frozen")
    assert _stored(service, "frozen") == 0


# --- enqueue-rate ----------------------------------------------------------------------------


def test_enqueue_rate_refuses_with_retry_after_and_a_refusal_spends_nothing(
    service: TaskService, tenants: TenantService
) -> None:
    tenants.create("r", enqueue_rate="3/hour")
    service.enqueue_many(_specs(2), tenant="r")
    with pytest.raises(QuotaExceededError) as caught:
        service.enqueue_many(_specs(2), tenant="r")  # 1 token left: the batch is refused
    assert caught.value.quota == "enqueue-rate"
    assert caught.value.limit == "3/hour"
    assert caught.value.retry_after is not None
    assert 1100 < caught.value.retry_after <= 1200  # one token refills in 20 minutes
    assert _tokens(service, "r") == pytest.approx(1.0, abs=0.01)
    service.enqueue_many(_specs(1), tenant="r")  # the token the refusal did not spend
    with pytest.raises(QuotaExceededError):
        service.enqueue_many(_specs(1), tenant="r")
    assert _stored(service, "r") == 3


def test_a_failed_insert_gives_its_tokens_back(
    service: TaskService, tenants: TenantService, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants.create("r", enqueue_rate="2/hour")
    service.enqueue_many(_specs(1), tenant="r")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the insert failed")

    monkeypatch.setattr(service.store.sql, "place_tasks", broken)
    with pytest.raises(RuntimeError):
        service.enqueue_many(_specs(1), tenant="r")
    monkeypatch.undo()
    assert _tokens(service, "r") == pytest.approx(1.0, abs=0.01)
    service.enqueue_many(_specs(1), tenant="r")
    assert _stored(service, "r") == 2


def test_a_changed_rate_starts_a_full_bucket(service: TaskService, tenants: TenantService) -> None:
    tenants.create("r", enqueue_rate="1/hour")
    service.enqueue_many(_specs(1), tenant="r")
    with pytest.raises(QuotaExceededError):
        service.enqueue_many(_specs(1), tenant="r")
    tenants.update("r", {"enqueue_rate": "3/hour"})
    service.enqueue_many(_specs(3), tenant="r")
    tenants.update("r", {"enqueue_rate": None})
    service.enqueue_many(_specs(10), tenant="r")  # no rate quota any more
    assert _stored(service, "r") == 14


# --- the fast path -----------------------------------------------------------------------------


def test_tenants_without_quotas_take_the_one_statement_insert(
    service: TaskService, tenants: TenantService, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants.create("free", weight=2)
    tenants.create("limited", max_queued=100)
    calls: list[str] = []
    at_once = service.store.sql.insert_at_once

    def spy(items: Any, **kwargs: Any) -> Any:
        calls.append(items[0].tenant)
        return at_once(items, **kwargs)

    monkeypatch.setattr(service.store.sql, "insert_at_once", spy)
    service.enqueue_many(_specs(2))
    service.enqueue_many(_specs(2), tenant="free")
    service.enqueue_many(_specs(2), tenant="limited")
    assert calls == ["default", "free"]  # the limited tenant's insert runs the transaction
    assert service.store.tenant_quota("default") is None
    assert service.store.tenant_quota("free") is None
    assert _stored(service, "limited") == 2


def test_max_queued_holds_across_two_stores_and_threads(url: str, tenants: TenantService) -> None:
    """Two services with engines of their own (two API processes, in one test process), 4
    threads each: exactly the limit is accepted (the SQLite variant of plan 11.3 too)."""
    tenants.create("q", max_queued=20)
    settings = load_settings(database_url=url, plugins_modules=["tests.support.testkit"])
    services = []
    for _ in range(2):
        store = Store(create_engine(url))
        services.append(
            TaskService(Runtime.load(settings), store, open_queue_backend(settings, store))
        )

    def enqueue(i: int) -> str:
        try:
            services[i % 2].enqueue_many(_specs(1), tenant="q")
        except QuotaExceededError as exc:
            return exc.quota
        return "created"

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(enqueue, range(40)))
        assert outcomes.count("created") == 20
        assert outcomes.count("max-queued") == 20
        assert _stored(services[0], "q") == 20
    finally:
        for service in services:
            service.close()
