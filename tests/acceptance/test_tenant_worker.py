"""``taskrt worker --tenant`` / ``--tenants`` with real worker processes (issue 16).

Tasks are enqueued through the service layer with ``tenant=``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskrt.app import App
from taskrt.enqueue import EnqueueSpec
from taskrt.settings import load_settings
from tests.support.db import Db
from tests.support.procs import WorkerProcess, run_cli, wait_for

pytestmark = pytest.mark.services


@pytest.fixture
def app(pg_url: str, redis_url: str, redis_prefix: str) -> Iterator[App]:
    settings = load_settings(
        database_url=pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
    )
    handle = App.open(settings)
    handle.store.create_tenant("acme")
    yield handle
    handle.close()


def enqueue(app: App, name: str, tenant: str, n: int = 1) -> list[str]:
    specs = [EnqueueSpec(name=name, payload={"i": i}) for i in range(n)]
    return [str(r.id) for r in app.service.enqueue_many(specs, tenant=tenant)]


def test_children_a_handler_enqueues_land_in_its_own_tenant(
    app: App, db: Db, service_env: dict[str, str], tmp_path: Path
) -> None:
    parents = {
        (tenant, name): enqueue(app, name, tenant)[0]
        for tenant in ("acme", "default")
        for name in ("testkit.spawn", "testkit.spawn_async")
    }
    worker = WorkerProcess(service_env, tmp_path / "w.log", "--tenants", "*").start()
    try:
        wait_for(lambda: db.task_statuses().get("completed", 0) == 8, timeout=60)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    for (tenant, _name), parent in parents.items():
        child = db.scalar(
            "SELECT id FROM tasks WHERE name = 'testkit.child' AND payload->>'parent' = :p",
            p=parent,
        )
        assert child is not None
        assert db.scalar("SELECT tenant FROM tasks WHERE id = :c", c=child) == tenant
        assert db.scalar("SELECT tenant FROM task_runs WHERE task_id = :c", c=child) == tenant
        result = db.scalar(
            "SELECT result FROM task_runs WHERE task_id = :c AND status = 'succeeded'", c=child
        )
        assert result["tenant"] == tenant  # TaskContext.tenant


def test_a_tenant_worker_serves_only_its_tenant(
    app: App, db: Db, service_env: dict[str, str], tmp_path: Path
) -> None:
    (mine,) = enqueue(app, "example.echo", "acme")
    (theirs,) = enqueue(app, "example.echo", "default")
    worker = WorkerProcess(service_env, tmp_path / "w.log", "--tenant", "acme").start()
    try:
        wait_for(lambda: db.task_statuses().get("completed", 0) == 1, timeout=30)
        row = db.rows("SELECT tenant, tenants FROM workers")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert db.scalar("SELECT status FROM tasks WHERE id = :i", i=mine) == "completed"
    assert db.scalar("SELECT status FROM tasks WHERE id = :i", i=theirs) == "queued"
    assert [tuple(r) for r in row] == [("acme", None)]


def test_a_worker_of_a_tenant_list_records_it(
    app: App, db: Db, service_env: dict[str, str], tmp_path: Path
) -> None:
    enqueue(app, "example.echo", "acme")
    enqueue(app, "example.echo", "default")
    worker = WorkerProcess(service_env, tmp_path / "w.log", "--tenants", "acme:3,default").start()
    try:
        wait_for(lambda: db.task_statuses().get("completed", 0) == 2, timeout=30)
        row = db.rows("SELECT tenant, tenants FROM workers")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert [tuple(r) for r in row] == [("*", ["acme", "default"])]
    assert "tenants acme:3,default" in worker.log()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nosuch"], "unknown tenant 'nosuch'"),
        (["--tenants", "acme,nosuch"], "unknown tenant 'nosuch'"),
        (["--tenant", "acme", "--tenants", "*"], "give --tenant or --tenants, not both"),
        (["--tenants", "Acme"], "invalid tenant name 'Acme'"),
        (["--tenants", "acme:0"], "weight of tenant 'acme' must be 1 to 1000"),
        (["--tenant", "a/b"], "invalid tenant name 'a/b'"),
    ],
)
def test_bad_tenant_options_are_refused_clearly(
    app: App, service_env: dict[str, str], args: list[str], message: str
) -> None:
    result = run_cli(["worker", *args], service_env, check=False, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr
