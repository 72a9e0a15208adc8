"""Migrations: an empty database upgraded to head has exactly the models' schema, and back;
existing rows move into the ``default`` tenant (0005) and only its rows survive a downgrade.

Runs against the real PostgreSQL server and against SQLite. The partial unique indexes the hot
paths rely on are checked by behaviour (inserting rows), not only by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from taskrt.db import migrate
from taskrt.db.engine import create_engine
from taskrt.db.models import include_object, metadata

TASKRT_TABLES = {
    "tenants",
    "tenant_quota_state",
    "tasks",
    "task_runs",
    "schedules",
    "schedule_fires",
    "workers",
    "outbox",
    "audit_log",
    "api_keys",
}


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_engine(request: pytest.FixtureRequest, empty_sqlite_url: str) -> Iterator[Engine]:
    """An engine on an empty database: a fresh PostgreSQL database, or a new SQLite file."""
    url = (
        request.getfixturevalue("empty_pg_url")
        if request.param == "postgresql"
        else empty_sqlite_url
    )
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on a migrated database (PostgreSQL cloned from the template, or SQLite)."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    engine = create_engine(url)
    yield engine
    engine.dispose()


def _table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        opts = {"compare_type": True, "include_object": include_object(conn.dialect.name)}
        context = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(context, metadata))


# --- upgrade / downgrade --------------------------------------------------------------------


def test_upgrade_of_an_empty_database_matches_the_models(empty_engine: Engine) -> None:
    assert migrate.current_revision(empty_engine) is None

    migrate.upgrade(empty_engine)

    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert migrate.is_up_to_date(empty_engine)
    assert _table_names(empty_engine) >= TASKRT_TABLES
    assert _table_names(empty_engine) - {"alembic_version"} == set(metadata.tables)
    assert _schema_diff(empty_engine) == []


def test_the_schema_diff_would_see_a_drift(empty_engine: Engine) -> None:
    """Guards the check above: a column the models lack is reported."""
    migrate.upgrade(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE workers ADD COLUMN stray INTEGER"))

    diff = _schema_diff(empty_engine)

    assert any(entry[0] == "remove_column" and entry[2] == "workers" for entry in diff), diff


def test_downgrade_to_base_removes_every_taskrt_table(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)

    migrate.downgrade(empty_engine, "base")

    assert migrate.current_revision(empty_engine) is None
    assert _table_names(empty_engine) - {"alembic_version"} == set()


def test_upgrade_after_downgrade_rebuilds_the_same_schema(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine, "base")

    migrate.upgrade(empty_engine)

    assert _schema_diff(empty_engine) == []


def test_upgrade_twice_is_a_no_op(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.upgrade(empty_engine)

    assert migrate.is_up_to_date(empty_engine)


# --- the partial unique indexes, by behaviour -----------------------------------------------


def _task(
    conn: sa.Connection,
    status: str,
    dedup_key: str | None,
    name: str = "email.send",
    **values: Any,
) -> uuid.UUID:
    task_id = uuid.uuid4()
    conn.execute(
        sa.insert(metadata.tables["tasks"]).values(
            **values,
            id=task_id,
            name=name,
            type="immediate",
            priority=0,
            queue_name="default",
            payload={"n": 1},
            status=status,
            dedup_key=dedup_key,
            max_retries=3,
            retry_strategy="exponential",
            retry_params={},
            lost_runs=0,
        )
    )
    return task_id


def _run(conn: sa.Connection, task_id: uuid.UUID, attempt: int, status: str) -> None:
    conn.execute(
        sa.insert(metadata.tables["task_runs"]).values(
            id=uuid.uuid4(),
            task_id=task_id,
            attempt=attempt,
            status=status,
            queue_name="default",
            available_at=datetime.now(UTC),
        )
    )


def test_two_live_tasks_cannot_share_a_dedup_key(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as conn:
        _task(conn, "queued", "order-42")

    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        _task(conn, "running", "order-42")


def test_a_finished_task_frees_its_dedup_key(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as conn:
        _task(conn, "completed", "order-42")
        _task(conn, "failed", "order-42")
        _task(conn, "queued", "order-42")  # one live beside finished ones is fine
        _task(conn, "queued", "order-42", name="email.other")  # another task type is fine
        _task(conn, "queued", None)
        _task(conn, "queued", None)  # no dedup key, no uniqueness

    with migrated_engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one()
    assert count == 6


def test_a_task_has_at_most_one_live_run(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as conn:
        task_id = _task(conn, "queued", None)
        _run(conn, task_id, 1, "queued")

    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        _run(conn, task_id, 2, "queued")


def test_finished_runs_do_not_block_the_next_one(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as conn:
        task_id = _task(conn, "queued", None)
        _run(conn, task_id, 1, "failed")
        _run(conn, task_id, 2, "lost")
        _run(conn, task_id, 3, "running")

    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        _run(conn, task_id, 4, "queued")  # a running run is live too


def test_an_attempt_number_is_used_once_per_task(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as conn:
        task_id = _task(conn, "queued", None)
        _run(conn, task_id, 1, "failed")

    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        _run(conn, task_id, 1, "queued")


def test_an_operator_key_is_a_known_role(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as conn:
        _api_key(conn, role="operator")

    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        _api_key(conn, role="superuser")


# --- tenants (migration 0005) -----------------------------------------------------------------

TENANT_TABLES = (
    "tasks",
    "task_runs",
    "outbox",
    "queues",
    "schedules",
    "workers",
    "api_keys",
    "audit_log",
)


def _api_key(conn: sa.Connection, role: str = "admin", **values: Any) -> None:
    key_id = uuid.uuid4()
    conn.execute(
        sa.insert(metadata.tables["api_keys"]).values(
            id=key_id,
            name="ci",
            role=role,
            prefix=f"tk_{key_id.hex[:8]}",
            key_hash="x" * 64,
            **values,
        )
    )


def _seed_every_table(conn: sa.Connection) -> None:
    """One row in every tenant-owned table, written without a tenant (as 0004 knows them)."""
    task_id = _task(conn, "queued", "order-42")
    run_id = uuid.uuid4()
    now = datetime.now(UTC)
    conn.execute(
        sa.insert(metadata.tables["task_runs"]).values(
            id=run_id,
            task_id=task_id,
            attempt=1,
            status="queued",
            queue_name="default",
            available_at=now,
        )
    )
    conn.execute(
        sa.insert(metadata.tables["outbox"]).values(
            run_id=run_id, queue_name="default", available_at=now
        )
    )
    template_id = _task(conn, "pending", None)
    schedule_id = uuid.uuid4()
    conn.execute(
        sa.insert(metadata.tables["schedules"]).values(
            id=schedule_id,
            name="nightly",
            task_template_id=template_id,
            cron_expr="0 3 * * *",
            timezone="UTC",
        )
    )
    conn.execute(
        sa.insert(metadata.tables["schedule_fires"]).values(
            schedule_id=schedule_id, fire_at=now, task_id=task_id
        )
    )
    conn.execute(
        sa.insert(metadata.tables["workers"]).values(
            id=uuid.uuid4(),
            name="w1",
            hostname="host",
            pid=1,
            queues=["default"],
            concurrency=4,
            version="1",
            status="online",
        )
    )
    _api_key(conn)
    conn.execute(
        sa.insert(metadata.tables["audit_log"]).values(
            actor="alice", action="queue.pause", target_type="queue", target_id="emails"
        )
    )
    # plain SQL: the models' queues table would ask for the tenant 0004 lacks (RETURNING)
    conn.execute(sa.text("INSERT INTO queues (name, paused) VALUES ('emails', :p)"), {"p": True})


def _counts(engine: Engine, *tables: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def test_upgrade_to_tenants_puts_every_existing_row_in_the_default_tenant(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, "0004")
    with empty_engine.begin() as conn:
        _seed_every_table(conn)
    before = _counts(empty_engine, *TENANT_TABLES, "schedule_fires")

    migrate.upgrade(empty_engine, "0005")

    assert _counts(empty_engine, *TENANT_TABLES, "schedule_fires") == before
    with empty_engine.connect() as conn:
        for table in TENANT_TABLES:
            tenants = conn.execute(sa.text(f"SELECT DISTINCT tenant FROM {table}")).scalars()
            assert list(tenants) == ["default"], table
        assert conn.execute(
            sa.text("SELECT name, weight, max_queued, enqueue_rate FROM tenants")
        ).all() == [("default", 1, None, None)]
        assert conn.execute(sa.text("SELECT paused FROM queues WHERE name = 'emails'")).scalar()
    assert _schema_diff(empty_engine) == []


def test_downgrade_from_tenants_keeps_the_default_tenants_rows(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.begin() as conn:
        _seed_every_table(conn)
    before = _counts(empty_engine, *TENANT_TABLES, "schedule_fires")

    migrate.downgrade(empty_engine, "0004")

    assert migrate.current_revision(empty_engine) == "0004"
    assert _counts(empty_engine, *TENANT_TABLES, "schedule_fires") == before
    assert "tenants" not in _table_names(empty_engine)
    with empty_engine.connect() as conn:
        assert "tenant" not in {c["name"] for c in sa.inspect(conn).get_columns("tasks")}
    migrate.upgrade(empty_engine)
    assert _schema_diff(empty_engine) == []


def test_downgrade_refuses_while_another_tenant_has_rows(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (name) VALUES ('acme')"))
        _task(conn, "queued", None, tenant="acme")

    with pytest.raises(RuntimeError, match="tasks holds rows of tenant 'acme'"):
        migrate.downgrade(empty_engine, "0004")

    assert migrate.current_revision(empty_engine) == "0005"
    with empty_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM tasks"))
    with pytest.raises(RuntimeError, match="tenants holds rows of tenant 'acme'"):
        migrate.downgrade(empty_engine, "0004")


def test_two_tenants_may_hold_the_same_live_dedup_key(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as conn:
        _task(conn, "queued", "order-42")
        _task(conn, "queued", "order-42", tenant="acme")

    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        _task(conn, "running", "order-42", tenant="acme")


def test_two_tenants_may_have_a_queue_of_the_same_name(migrated_engine: Engine) -> None:
    queues = metadata.tables["queues"]
    with migrated_engine.begin() as conn:
        conn.execute(sa.insert(queues).values(name="q", paused=True))
        conn.execute(sa.insert(queues).values(tenant="acme", name="q", paused=False))

    with migrated_engine.connect() as conn:
        rows = conn.execute(sa.select(queues.c.tenant, queues.c.paused).order_by("tenant")).all()
    assert rows == [("acme", False), ("default", True)]
    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        conn.execute(sa.insert(queues).values(tenant="acme", name="q", paused=True))


def test_an_api_key_belongs_to_a_known_tenant(migrated_engine: Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as conn:
        _api_key(conn, tenant="nobody")
