"""``taskrt tenants create|list|show|update|delete`` through the real command line, on SQLite
(issue 16): JSON and tables, clearing a quota with ``none``, one-line errors naming what was
wrong, and the refusals of deleting ``default`` or a tenant holding tasks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.procs import run_cli, service_env


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    return service_env(sqlite_url)


def _json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run_cli([*args, "--json"], env).stdout)


def test_tenants_are_managed_from_the_command_line(env: dict[str, str]) -> None:
    created = _json(env, "tenants", "create", "acme", "--weight", "3", "--max-queued", "10")
    assert {k: created[k] for k in ("name", "weight", "max_queued", "enqueue_rate")} == {
        "name": "acme",
        "weight": 3,
        "max_queued": 10,
        "enqueue_rate": None,
    }
    assert [t["name"] for t in _json(env, "tenants", "list")] == ["acme", "default"]
    table = run_cli(["tenants", "list"], env).stdout
    assert "acme" in table
    assert "unlimited" in table

    changed = _json(
        env, "tenants", "update", "acme", "--max-queued", "none", "--enqueue-rate", "5/second"
    )
    assert (changed["max_queued"], changed["enqueue_rate"], changed["weight"]) == (
        None,
        "5/second",
        3,
    )
    assert _json(env, "tenants", "show", "acme")["enqueue_rate"] == "5/second"

    done = run_cli(["tenants", "delete", "acme"], env)
    assert "tenant acme deleted" in done.stdout
    missing = run_cli(["tenants", "show", "acme"], env, check=False)
    assert missing.returncode == 1
    assert "unknown tenant 'acme'" in missing.stderr


def test_bad_input_gets_one_line_errors(env: dict[str, str]) -> None:
    bad = run_cli(["tenants", "create", "Bad/Name", "--weight", "0"], env, check=False)
    assert bad.returncode == 1
    assert "name:" in bad.stderr
    assert "weight: must be between 1 and 1000" in bad.stderr
    assert "Traceback" not in bad.stderr
    rate = run_cli(["tenants", "create", "acme", "--enqueue-rate", "lots"], env, check=False)
    assert rate.returncode == 1
    assert "enqueue_rate: rate 'lots' is not N/second" in rate.stderr
    cap = run_cli(["tenants", "create", "acme", "--max-queued", "many"], env, check=False)
    assert cap.returncode == 2
    assert "'many' is not an integer" in cap.stderr
    nothing = run_cli(["tenants", "update", "default"], env, check=False)
    assert nothing.returncode == 2
    run_cli(["tenants", "create", "acme"], env)
    twice = run_cli(["tenants", "create", "acme"], env, check=False)
    assert twice.returncode == 1
    assert "tenant 'acme' already exists" in twice.stderr


def test_default_and_tenants_holding_tasks_are_not_deleted(env: dict[str, str]) -> None:
    refused = run_cli(["tenants", "delete", "default"], env, check=False)
    assert refused.returncode == 1
    assert "the default tenant cannot be deleted" in refused.stderr
    run_cli(["tenants", "create", "busy"], env)
    run_cli(["--tenant", "busy", "enqueue", "example.echo", "--payload", "{}"], env)
    held = run_cli(["tenants", "delete", "busy"], env, check=False)
    assert held.returncode == 1
    assert "tenant 'busy' still holds tasks" in held.stderr
    assert _json(env, "tenants", "show", "busy")["queued"] == 1
