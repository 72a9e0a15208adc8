"""The limits of the HTTP API hold on every other path into the service layer: the Python
client, ``taskrt enqueue``, ``taskrt enqueue-file`` and ``taskrt schedules add`` refuse JSON
nested too deep, lone surrogates, out-of-range ``run_at`` and delays with a clear error naming
the field, and store nothing (issue 12, defects 2 and 3)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from taskrt.client import Client
from taskrt.exceptions import ValidationError
from tests.api.test_input_hardening import nested
from tests.support.db import Db
from tests.support.procs import run_cli

pytestmark = pytest.mark.services

LONE = "\ud800"


def _nothing_stored(db: Db) -> None:
    for table in ("tasks", "task_runs", "schedules", "outbox", "audit_log"):
        assert db.scalar(f"SELECT count(*) FROM {table}") == 0, table


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"payload": nested(65)}, "payload"),
        ({"payload": nested(5000)}, "payload"),
        ({"payload": {"a": [LONE]}}, "payload"),
        ({"payload": {LONE: 1}}, "payload"),
        ({"dedup_key": f"k{LONE}"}, "dedup_key"),
        ({"run_at": datetime.fromisoformat("9999-12-31T23:59:59-14:00")}, "run_at"),
        ({"run_at": datetime.fromisoformat("0001-01-01T00:00:00+14:00")}, "run_at"),
        ({"delay": 1e300}, "delay"),
    ],
    ids=[
        "deep",
        "very-deep",
        "surrogate",
        "surrogate-key",
        "dedup-key",
        "run-at-late",
        "run-at-early",
        "delay",
    ],
)
def test_the_client_refuses_what_no_store_can_hold(
    client: Client, db: Db, options: dict[str, Any], field: str
) -> None:
    payload = options.pop("payload", None)
    with pytest.raises(ValidationError) as info:
        client.enqueue("example.echo", payload, **options)
    assert field in [e["loc"][0] for e in info.value.errors], info.value.errors
    with pytest.raises(ValidationError) as batch:
        client.enqueue_many(
            [{"name": "example.echo"}, {"name": "example.echo", "payload": payload, **options}]
        )
    assert [1, field] in [e["loc"][:2] for e in batch.value.errors], batch.value.errors
    _nothing_stored(db)


def _refused(args: list[str], env: dict[str, str], *expected: str) -> None:
    proc = run_cli(args, env, check=False)
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (json.dumps(nested(65)), ["payload", "TASKRT_MAX_JSON_DEPTH"]),
        ("[" * 100_000 + "]" * 100_000, ["payload", "TASKRT_MAX_JSON_DEPTH"]),
        (json.dumps({"text": LONE}), ["payload.text", "lone surrogates"]),
    ],
    ids=["deep", "past-the-parser", "surrogate"],
)
def test_cli_enqueue_and_schedules_add_refuse_them_clearly(
    payload: str, expected: list[str], service_env: dict[str, str], db: Db, tmp_path: Path
) -> None:
    file = tmp_path / "payload.json"
    file.write_text(payload)
    _refused(["enqueue", "example.echo", "--payload", f"@{file}"], service_env, *expected)
    _refused(
        [
            "schedules",
            "add",
            "--cron",
            "* * * * *",
            "--task",
            "example.echo",
            "--payload",
            f"@{file}",
        ],
        service_env,
        *expected,
    )
    _nothing_stored(db)


def test_cli_enqueue_refuses_a_far_delay_and_schedules_add_a_lone_surrogate_name(
    service_env: dict[str, str], db: Db
) -> None:
    _refused(["enqueue", "example.echo", "--delay", "1e300"], service_env, "delay")
    _refused(
        ["enqueue", "example.echo", "--retry", "fixed", "--retry-params", json.dumps(nested(70))],
        service_env,
        "retry_params",
    )
    _nothing_stored(db)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"name": "example.echo", "payload": nested(65)}, "TASKRT_MAX_JSON_DEPTH"),
        ({"name": "example.echo", "payload": LONE}, "lone surrogates"),
        ({"name": "example.echo", "dedup_key": LONE}, "dedup_key"),
        ({"name": "example.echo", "run_at": "9999-12-31T23:59:59-14:00"}, "run_at"),
        ({"name": "example.echo", "run_at": "0001-01-01T00:00:00+14:00"}, "run_at"),
    ],
    ids=["deep", "surrogate", "dedup-key", "run-at-late", "run-at-early"],
)
def test_cli_enqueue_file_refuses_them_naming_the_line(
    line: dict[str, Any], expected: str, service_env: dict[str, str], db: Db, tmp_path: Path
) -> None:
    file = tmp_path / "tasks.jsonl"
    file.write_text(json.dumps({"name": "example.echo"}) + "\n" + json.dumps(line) + "\n")
    proc = run_cli(["enqueue-file", str(file)], service_env, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "line 2" in proc.stderr, proc.stderr


def test_cli_enqueue_file_refuses_a_line_past_the_parser(
    service_env: dict[str, str], db: Db, tmp_path: Path
) -> None:
    file = tmp_path / "tasks.jsonl"
    file.write_text('{"name": "example.echo", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    proc = run_cli(["enqueue-file", str(file)], service_env, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "line 1" in proc.stderr, proc.stderr
    assert "nested too deep" in proc.stderr, proc.stderr
    _nothing_stored(db)


def test_cli_apikey_create_refuses_a_name_no_store_can_hold(
    service_env: dict[str, str], db: Db
) -> None:
    # invalid UTF-8 on the command line reaches Python as lone surrogates (surrogateescape)
    undecodable = "ci-\udced\udca0\udc80"
    for name in (undecodable, "n" * 201):
        _refused(["apikey", "create", "--name", name, "--role", "reader"], service_env, "name")
    assert db.scalar("SELECT count(*) FROM api_keys") == 0
    _nothing_stored(db)
