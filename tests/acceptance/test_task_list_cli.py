"""``taskrt task list``: searching tasks from the command line, as a table or JSON, a page at a
time; on PostgreSQL and on SQLite."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from taskrt.db.engine import create_engine
from tests.support import procs
from tests.support.searchdata import T0, add_task

pytestmark = pytest.mark.services


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, dict[str, str]]]:
    """An engine on this test's database and the environment of a ``taskrt`` run on it."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        env = procs.service_env(
            url,
            redis_url=request.getfixturevalue("redis_url"),
            redis_prefix=request.getfixturevalue("redis_prefix"),
        )
    else:
        url = request.getfixturevalue("sqlite_url")
        env = procs.service_env(url)
    engine = create_engine(url)
    yield engine, env
    engine.dispose()


def listing(env: Mapping[str, str], *args: str) -> dict[str, Any]:
    result = procs.run_cli(["task", "list", "--json", *args], env)
    return dict(json.loads(result.stdout))


def found(env: Mapping[str, str], *args: str) -> list[str]:
    return [item["id"] for item in listing(env, *args)["items"]]


def newest_first(*task_ids: uuid.UUID | str) -> list[str]:
    return [str(t) for t in sorted(map(uuid.UUID, map(str, task_ids)), reverse=True)]


@pytest.mark.slow
def test_filters_table_and_json(database: tuple[Engine, dict[str, str]]) -> None:
    engine, env = database
    enqueued = procs.run_cli(
        ["enqueue", "testkit.record", "--payload", '{"customer_id": 42, "region": {"code": "eu"}}'],
        env,
    ).stdout.strip()
    recent = datetime.now(UTC) - timedelta(minutes=5)
    failed = add_task(
        engine,
        created=recent,
        status="failed",
        queue="mail",
        name="mail.send",
        finished=recent,
        errors=("myapp.SmtpError",),
        payload={"customer_id": 42},
    )
    old = add_task(engine, created=T0, status="completed", finished=T0, dedup_key="order-7")

    assert found(env) == newest_first(enqueued, failed, old)
    assert found(env, "--status", "failed") == newest_first(failed)
    assert found(env, "--queue", "mail", "--type", "mail.send") == newest_first(failed)
    assert found(env, "--error-type", "myapp.SmtpError") == newest_first(failed)
    assert found(env, "--dedup-key", "order-7") == newest_first(old)
    assert found(env, "--payload", "customer_id=42") == newest_first(enqueued, failed)
    assert found(env, "--payload", "customer_id=42", "--payload", "region.code=eu") == [enqueued]
    assert found(env, "--payload", 'customer_id="42"') == []
    assert found(env, "--finished-after", "1h") == newest_first(failed)
    assert found(env, "--finished-before", "2026-11-02T00:00:00Z") == newest_first(old)
    assert found(env, "--created-after", "2026-11-02T00:00:00+00:00") == newest_first(
        enqueued, failed
    )
    page = listing(env, "--status", "failed")
    assert page["items"][0]["latest_run"]["error_type"] == "myapp.SmtpError"
    assert page["next_cursor"] is None

    table = procs.run_cli(["task", "list", "--status", "failed"], env).stdout
    assert str(failed) in table
    assert "myapp.SmtpError" in table
    assert str(old) not in table


def test_pages_follow_the_cursor(database: tuple[Engine, dict[str, str]]) -> None:
    engine, env = database
    wanted = [
        add_task(engine, created=T0 + timedelta(seconds=s), status="failed") for s in range(3)
    ]
    add_task(engine, created=T0 + timedelta(seconds=1, milliseconds=5))

    seen: list[str] = []
    args = ["--status", "failed", "--limit", "2"]
    while True:
        page = listing(env, *args)
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        args = ["--status", "failed", "--limit", "2", "--cursor", page["next_cursor"]]
    assert seen == newest_first(*wanted)

    table = procs.run_cli(["task", "list", "--status", "failed", "--limit", "2"], env)
    assert "more: --cursor " in table.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "customer_id"], "Error: --payload: 'customer_id' has no '='"),
        (["--payload", "a b=1"], "Error: --payload: 'a b' is not a payload key path"),
        (["--payload", "a=[1]"], "Error: --payload: payload equality compares strings"),
        (["--finished-after", "yesterday"], "Error: --finished-after: 'yesterday' is neither"),
        (["--created-before", "2026-11-02T00:00:00"], "Error: --created-before: "),
        (["--cursor", "nonsense"], "Error: --cursor: 'nonsense' is not a cursor"),
    ],
)
def test_bad_filters_are_named(sqlite_url: str, args: list[str], message: str) -> None:
    """Checked before the database is asked (so one database is enough)."""
    env = procs.service_env(sqlite_url)
    result = procs.run_cli(["task", "list", *args], env, check=False)

    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
