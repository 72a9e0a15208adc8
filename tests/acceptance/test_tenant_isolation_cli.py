"""Tenant isolation on the command line: every command run with ``--tenant bravo`` (or
TASKRT_TENANT=bravo) on tenant ``acme``'s ids and names answers "not found" (exit 1) or lists
none of acme's objects, and nothing of acme's changes.

Every command of the ``taskrt`` group (recursively, plugin commands included) has a row in
:data:`COMMANDS`; commands that read or change no tenant's tasks, queues, schedules or keys
(servers, the worker, the schema, settings, the tenants admin) have a row saying why.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa

from taskrt.apikeys import create_api_key
from taskrt.app import App
from taskrt.records import Actor, WorkerInfo
from taskrt.service import EnqueueSpec
from taskrt.settings import load_settings
from tests.support import services
from tests.support.db import Db
from tests.support.procs import run_cli
from tests.support.tenants import create_tenant, snapshot

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def _cli_group_left_as_found() -> Iterator[None]:
    """Walking the in-process ``taskrt`` group adds the plugins' commands to it; take them
    away again, so later tests see the built-in group (the CLI reference test does)."""
    from taskrt.cli import cli

    commands, added = dict(cli.commands), cli._plugin_commands_added
    yield
    cli.commands.clear()
    cli.commands.update(commands)
    cli._plugin_commands_added = added


A, B = "acme", "bravo"
RANDOM = "00000000-0000-7000-8000-000000000000"


@dataclass
class World:
    """Tenant A's objects, by name."""

    ids: dict[str, str] = field(default_factory=dict)

    def fill(self, arg: str, *, random_id: bool = False) -> str:
        for name, value in self.ids.items():
            arg = arg.replace(f"{{{name}}}", RANDOM if random_id else value)
        return arg


@pytest.fixture
def world(pg_url: str, redis_url: str, redis_prefix: str, db: Db) -> World:
    create_tenant(db.engine, A)
    create_tenant(db.engine, B)
    settings = load_settings(
        database_url=pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
    )
    with App.open(settings) as app:
        tasks = app.service.scoped(A)
        actor = Actor("test", tenant=A)
        queued = tasks.enqueue(
            EnqueueSpec(name="example.echo", queue="aq2", dedup_key="acme-key"), actor=actor
        )
        failed = tasks.enqueue(EnqueueSpec(name="example.echo", queue="aq2"), actor=actor)
        with db.engine.begin() as conn:
            for table in ("tasks", "task_runs"):
                column = "id" if table == "tasks" else "task_id"
                status = "status = 'failed', finished_at = now() - interval '1 hour'"
                conn.execute(
                    sa.text(f"UPDATE {table} SET {status} WHERE {column} = :id"),
                    {"id": failed.id},
                )
        schedule = app.schedules.scoped(A).create(
            cron="* * * * *", timezone="UTC", task="example.echo", queue="aq2", actor=actor
        )
        with db.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE schedules SET next_fire_at = date_trunc('minute', now())"),
            )
        assert app.schedules.fire_due().fires
        tasks.pause("aq", actor=actor)
        worker = uuid.uuid4()
        app.store.register_worker(
            WorkerInfo(worker, "acme-worker", "acme-host", 1, ("aq2",), 1, "test", tenant=A)
        )
        key, _ = create_api_key(app.store, name="acme-admin", role="admin", tenant=A)
    return World(
        {
            "queued": str(queued.id),
            "failed": str(failed.id),
            "schedule": str(schedule.id),
            "worker": str(worker),
            "key": str(key.id),
        }
    )


Check = Callable[[World, Any], None]


@dataclass(frozen=True)
class Command:
    path: str
    """The command, as typed (``task show``)."""
    args: tuple[str, ...] = ()
    exit_code: int = 0
    check: Check | None = None
    """Called with the parsed JSON output (commands run with ``--json``)."""
    not_found: bool = False
    """Must fail exactly as for a random id."""
    skip: str | None = None
    """Why the command is not part of the matrix."""


def _no_a(*names: str) -> Check:
    def check(world: World, out: Any) -> None:
        text = json.dumps(out)
        for name in names:
            assert world.ids[name] not in text, name

    return check


def _empty(world: World, out: Any) -> None:
    assert out == []


def _no_a_queues(world: World, out: Any) -> None:
    for queue in out:
        if queue["name"] in ("aq", "aq2"):  # B's own queue of that name: empty, not paused
            assert queue["ready"] == queue["dlq"] == queue["delayed"] == 0
            assert queue["paused"] is False


def _not_a_task(world: World, out: Any) -> None:
    assert out["id"] not in world.ids.values()


def _nothing_pruned(world: World, out: Any) -> None:
    assert out["deleted"]["tasks"] == 0


def _replayed_none(world: World, out: Any) -> None:
    assert out == {"replayed": [], "skipped": [world.ids["failed"]]}


SERVES = "a long-running process: serves the tenants it is given (tests of its own)"

COMMANDS = [
    Command("api", skip=SERVES),
    Command("dev", skip=SERVES),
    Command("demo", skip="runs its own tasks in the chosen tenant; reads nothing of others"),
    Command("scheduler", skip=SERVES + "; fires each schedule into its own tenant"),
    Command("worker", skip=SERVES),
    Command("db current", skip="the schema: no tenant's data"),
    Command("db upgrade", skip="the schema: no tenant's data"),
    Command("db downgrade", skip="the schema: no tenant's data"),
    Command("config show", skip="settings: no tenant's data"),
    Command("plugins", skip="installed task types: no tenant's data"),
    Command("tenants create", skip="the tenants admin (operator): its own tests"),
    Command("tenants list", skip="the tenants admin (operator): its own tests"),
    Command("tenants show", skip="the tenants admin (operator): its own tests"),
    Command("tenants update", skip="the tenants admin (operator): its own tests"),
    Command("tenants delete", skip="the tenants admin (operator): its own tests"),
    Command(
        "enqueue", ("example.echo", "--queue", "bq", "--dedup-key", "acme-key"), 0, _not_a_task
    ),
    Command("enqueue-file", ("{file}",), 0),
    Command("task show", ("{queued}",), 1, not_found=True),
    Command("task retry", ("{failed}",), 1, not_found=True),
    Command("task cancel", ("{queued}",), 1, not_found=True),
    Command("task list", (), 0, _no_a("queued", "failed")),
    Command("queues", (), 0, _no_a_queues),
    Command("queue pause", ("aq2",), 0),  # B's own aq2: A's stays as it is
    Command("queue resume", ("aq",), 0),  # B's own aq: A's stays paused
    Command("dlq list", ("aq2",), 0, _empty),
    Command("dlq replay", ("{failed}",), 1, _replayed_none),
    Command("workers", ("--all",), 0, _no_a("worker")),
    Command("schedules list", (), 0, _no_a("schedule")),
    Command("schedules add", ("--cron", "* * * * *", "--task", "example.echo"), 0),
    Command("schedules show", ("{schedule}",), 1, not_found=True),
    Command("schedules next", ("{schedule}",), 1, not_found=True),
    Command("schedules fires", ("{schedule}",), 1, not_found=True),
    Command("schedules enable", ("{schedule}",), 1, not_found=True),
    Command("schedules disable", ("{schedule}",), 1, not_found=True),
    Command("schedules delete", ("{schedule}",), 1, not_found=True),
    Command("prune", ("--older-than", "1s"), 0, _nothing_pruned),
    Command("apikey create", ("--name", "b", "--role", "reader"), 0, _no_a("key")),
    Command("apikey list", (), 0, _no_a("key")),
    Command("apikey revoke", ("{key}",), 1, not_found=True),
]

# task list again with each filter that could reach A's tasks
TASK_FILTERS = [
    ("--status", "queued"),
    ("--status", "failed"),
    ("--queue", "aq2"),
    ("--type", "example.echo"),
    ("--dedup-key", "acme-key"),
    ("--kind", "scheduled"),
    ("--finished-before", "2100-01-01T00:00:00Z"),
]


def _json_flag(path: str) -> bool:
    from taskrt.cli import cli

    command: Any = cli
    ctx = click.Context(cli)
    for word in path.split():
        command = command.get_command(ctx, word)
        ctx = click.Context(command, parent=ctx)
    return any(p.name == "as_json" for p in command.params)


def _all_commands() -> set[str]:
    from taskrt.cli import cli

    found: set[str] = set()

    def walk(group: click.Group, prefix: list[str], ctx: click.Context) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            if isinstance(command, click.Group):
                walk(command, [*prefix, name], click.Context(command, parent=ctx))
            else:
                found.add(" ".join([*prefix, name]))

    walk(cli, [], click.Context(cli))
    return found


def test_the_matrix_covers_every_command() -> None:
    assert {c.path for c in COMMANDS} == _all_commands()


def test_tenant_b_reaches_nothing_of_tenant_a_from_the_command_line(
    world: World, service_env: dict[str, str], db: Db, redis_prefix: str, tmp_path: Path
) -> None:
    batch = tmp_path / "tasks.jsonl"
    batch.write_text(json.dumps({"name": "example.echo", "queue": "bq"}) + "\n")
    world.ids["file"] = str(batch)
    redis = services.redis_client()
    before = snapshot(db.engine, A, redis, redis_prefix)
    failures: list[str] = []
    for number, command in enumerate(c for c in COMMANDS if c.skip is None):
        # half the rows choose B with --tenant, the other half with TASKRT_TENANT
        if number % 2:
            env, head = {**service_env, "TASKRT_TENANT": B}, []
        else:
            env, head = service_env, ["--tenant", B]
        as_json = ["--json"] if _json_flag(command.path) else []
        args = [*head, *command.path.split(), *[world.fill(a) for a in command.args], *as_json]
        done = run_cli(args, env, check=False)
        where = f"taskrt {' '.join(args)}"
        if done.returncode != command.exit_code:
            failures.append(f"{where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
            continue
        if command.not_found:
            random = [*head, *command.path.split()]
            random += [world.fill(a, random_id=True) for a in command.args] + as_json
            other = run_cli(random, env, check=False)
            mine = done.stderr
            for value in world.ids.values():
                mine = mine.replace(value, RANDOM)
            if other.returncode != 1 or mine != other.stderr:
                failures.append(f"{where}: {done.stderr!r} differs from {other.stderr!r}")
        elif command.check is not None:
            try:
                command.check(world, json.loads(done.stdout))
            except (AssertionError, ValueError) as exc:
                failures.append(f"{where}: {exc!r}\n{done.stdout}")
    for option, value in TASK_FILTERS:
        done = run_cli(["--tenant", B, "task", "list", option, value, "--json"], service_env)
        listed = json.loads(done.stdout)
        found = {t["id"] for t in (listed["items"] if isinstance(listed, dict) else listed)}
        if found & {world.ids["queued"], world.ids["failed"]}:
            failures.append(f"task list {option} {value}: {done.stdout}")
    after = snapshot(db.engine, A, redis, redis_prefix)
    redis.close()
    assert not failures, "\n\n".join(failures)
    assert after == before
    # A itself still sees its task
    own = run_cli(["--tenant", A, "task", "show", world.ids["queued"], "--json"], service_env)
    assert json.loads(own.stdout)["id"] == world.ids["queued"]


def test_an_unknown_tenant_is_an_error(service_env: dict[str, str]) -> None:
    unknown = run_cli(["--tenant", "nowhere", "task", "list"], service_env, check=False)
    assert unknown.returncode == 1
    assert "unknown tenant 'nowhere'" in unknown.stderr
    malformed = run_cli(["task", "list"], {**service_env, "TASKRT_TENANT": "No Such"}, check=False)
    assert malformed.returncode == 1
    assert "tenant" in malformed.stderr
