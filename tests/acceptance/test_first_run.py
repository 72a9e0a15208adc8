"""A newcomer's first commands, in an empty folder with no settings: they work, and a bad
database setting is one line naming the setting and the fix, never a traceback."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support import services
from tests.support.procs import TASKRT, bare_env

pytestmark = pytest.mark.services


def taskrt(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``taskrt ARGS`` run in ``cwd`` as a fresh shell would run it."""
    return subprocess.run(
        [TASKRT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_enqueue_then_worker_completes_the_task_in_an_empty_folder(tmp_path: Path) -> None:
    env = bare_env()
    enqueued = taskrt(["enqueue", "example.echo", "--payload", "{}"], tmp_path, env)
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = enqueued.stdout.strip().splitlines()[-1]
    uuid.UUID(task_id)  # the first command printed the new task's id
    assert (tmp_path / "taskrt.db").is_file()
    assert "Traceback" not in enqueued.stderr

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([TASKRT, "worker"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        status = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = taskrt(["task", "show", task_id, "--json"], tmp_path, env)
            assert shown.returncode == 0, shown.stderr
            status = json.loads(shown.stdout)["status"]
            if status == "completed":
                break
            time.sleep(0.3)
        assert status == "completed", (tmp_path / "worker.log").read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        log.close()
    queues = taskrt(["queues"], tmp_path, env)
    assert queues.returncode == 0, queues.stderr


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "TASKRT_DATABASE_URL" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [["queues"], ["worker"], ["enqueue", "example.echo"], ["api"]])
def test_a_database_without_the_schema_says_to_run_db_upgrade(
    command: list[str], empty_pg_url: str, tmp_path: Path
) -> None:
    env = {**bare_env(), "TASKRT_DATABASE_URL": empty_pg_url}
    line = _one_line_error(taskrt(command, tmp_path, env))
    assert "has no taskrt schema" in line
    assert "taskrt db upgrade" in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            services.pg_url_for(f"taskrt_missing_{uuid.uuid4().hex[:8]}"),
            ["does not exist", "createdb"],
        ),
        ("postgresql://postgres@127.0.0.1:1/taskrt", ["cannot reach PostgreSQL", "127.0.0.1:1"]),
        ("postgresql://no_such_role_x@127.0.0.1:5432/postgres", ["refused the login"]),
        ("mysql://root@127.0.0.1/taskrt", ["unsupported database 'mysql'", "postgresql://"]),
        ("postgresql://a:secret@host:port/db", ["is not a database URL"]),
        ("sqlite:////nonexistent-folder-x/taskrt.db", ["folder /nonexistent-folder-x does not"]),
    ],
    ids=["no-such-database", "no-server", "bad-login", "unsupported", "malformed", "sqlite-folder"],
)
def test_a_bad_database_setting_is_one_line_naming_the_setting_and_the_fix(
    url: str, expected: list[str], tmp_path: Path
) -> None:
    env = {**bare_env(), "TASKRT_DATABASE_URL": url}
    for command in (["queues"], ["worker"]):
        line = _one_line_error(taskrt(command, tmp_path, env))
        for part in expected:
            assert part in line, line
        assert "secret" not in line  # passwords are never printed


def test_a_sqlite_path_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    env = {**bare_env(), "TASKRT_DATABASE_URL": f"sqlite:///{tmp_path}"}
    line = _one_line_error(taskrt(["queues"], tmp_path, env))
    assert "cannot open the SQLite database" in line, line


def test_on_a_terminal_the_worker_writes_text_and_a_line_per_finished_task(tmp_path: Path) -> None:
    env = bare_env()
    enqueued = taskrt(["enqueue", "example.echo", "--payload", '{"n": 1}'], tmp_path, env)
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = enqueued.stdout.strip().splitlines()[-1]
    primary, secondary = pty.openpty()  # the worker's stderr is a terminal, as in a shell
    worker = subprocess.Popen(
        [TASKRT, "worker"], cwd=tmp_path, env=env, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"succeeded" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                seen += os.read(primary, 65536)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        os.close(primary)
    text = seen.decode(errors="replace")
    line = next((x for x in text.splitlines() if "succeeded" in x), "")
    assert "example.echo" in line, text
    assert not line.lstrip().startswith("{"), text  # text for a person, not JSON
    shown = taskrt(["task", "show", task_id, "--json"], tmp_path, env)
    assert json.loads(shown.stdout)["runs"][-1]["id"] in line, text
