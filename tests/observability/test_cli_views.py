"""The people-facing CLI: `taskrt enqueue-file` (batches, all or nothing per batch, the bad
line named), and the trace id and durations in `taskrt task show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.db import Db
from tests.support.procs import run_cli

pytestmark = pytest.mark.services


def _lines(count: int, **extra: object) -> list[str]:
    return [
        json.dumps({"name": "example.echo", "payload": {"i": i}, **extra}) for i in range(count)
    ]


def test_a_file_is_enqueued_in_batches(service_env: dict[str, str], tmp_path: Path, db: Db) -> None:
    lines = _lines(1200)
    lines[10] = ""  # blank lines are skipped
    lines[20] = json.dumps({"name": "example.echo", "dedup_key": "once"})
    lines[21] = json.dumps({"name": "example.echo", "dedup_key": "once"})
    lines[30] = json.dumps(
        {"name": "example.echo", "run_at": "2999-01-01T00:00:00+00:00", "trace_id": "from-file"}
    )
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_cli(["enqueue-file", str(path), "--batch-size", "500", "--json"], service_env)
    out = json.loads(result.stdout)
    assert out["created"] == 1198  # 1200 lines, one blank, one dedup hit
    assert out["existing"] == 1
    assert [t["line"] for t in out["tasks"]][:12] == [*range(1, 11), 12, 13]
    assert db.scalar("SELECT count(*) FROM tasks") == 1198
    later = next(t["id"] for t in out["tasks"] if t["line"] == 31)
    shown = run_cli(["task", "show", later], service_env).stdout
    assert "from-file" in shown  # the trace id row
    assert (
        db.scalar(
            "SELECT count(*) FROM task_runs WHERE available_at > now() + interval '100 years'"
        )
        == 1
    )


def test_a_bad_line_stops_and_keeps_only_the_batches_before_it(
    service_env: dict[str, str], tmp_path: Path, db: Db
) -> None:
    lines = _lines(1300)
    lines[1202] = json.dumps({"name": "no.such.task"})
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_cli(["enqueue-file", str(path), "--batch-size", "500"], service_env, check=False)
    assert result.returncode == 1
    assert "line 1203: unknown task 'no.such.task'" in result.stderr
    assert "1000 task(s) of lines 1 to 1000 were stored; nothing from line 1001 on" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert db.scalar("SELECT count(*) FROM tasks") == 1000


def test_standard_input_and_a_line_that_is_not_json(service_env: dict[str, str], db: Db) -> None:
    text = "\n".join([*_lines(2), '{"name": "example.echo", oops}', *_lines(2)]) + "\n"
    result = run_cli(
        ["enqueue-file", "-", "--batch-size", "2"], service_env, check=False, input_text=text
    )
    assert result.returncode == 1
    assert "line 3: not valid JSON" in result.stderr
    assert db.scalar("SELECT count(*) FROM tasks") == 2
    wrong = run_cli(
        ["enqueue-file", "-"],
        service_env,
        check=False,
        input_text='{"name": "example.echo", "max_retries": "3"}\n',
    )
    assert "line 1: max_retries must be int, got '3'" in wrong.stderr
    assert "nothing was stored" in wrong.stderr


def test_task_show_has_run_durations(service_env: dict[str, str]) -> None:
    task_id = run_cli(["enqueue", "example.echo"], service_env).stdout.strip()
    shown = run_cli(["task", "show", task_id], service_env).stdout
    assert "trace id" in shown
    assert "took" in shown
