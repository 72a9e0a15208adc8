"""The foundation as a user meets it: the real ``taskrt`` console script, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import taskrt
from tests.support.plugin_dists import clean_env

TASKRT = Path(sys.executable).parent / "taskrt"

EXAMPLE_DIST = "taskrt-handlers-example"
EXAMPLE_TASKS = {"example.echo", "example.sleep", "example.flaky", "example.word_count"}
STRATEGIES = {
    "exponential": "taskrt",
    "fixed": "taskrt",
    "linear": "taskrt",
    "none": "taskrt",
    "example.fibonacci": EXAMPLE_DIST,
}


def taskrt_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with only the given taskrt settings."""
    return subprocess.run(
        [str(TASKRT), *args],
        cwd=cwd,
        env=clean_env({"COLUMNS": "200", **(env or {})}),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_console_script_is_installed() -> None:
    assert TASKRT.is_file(), f"{TASKRT} missing: is taskrt installed in this venv?"


def test_version(tmp_path: Path) -> None:
    out = ok(taskrt_cli("--version", cwd=tmp_path))

    assert out.strip() == f"taskrt, version {taskrt.__version__}"


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = ok(taskrt_cli("--help", cwd=tmp_path))

    commands = out.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert {"plugins", "db", "config"} <= listed
    assert "--config" in out
    assert "taskrt db upgrade" in out  # the "start here" lines


def test_db_help_lists_its_subcommands(tmp_path: Path) -> None:
    out = ok(taskrt_cli("db", "--help", cwd=tmp_path))

    for command in ("upgrade", "downgrade", "current"):
        assert command in out


# --- plugins ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugins_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        ok(taskrt_cli("plugins", "--json", cwd=tmp_path_factory.mktemp("cwd")))
    )
    return data


def test_plugins_lists_exactly_the_four_example_handlers(plugins_json: dict[str, Any]) -> None:
    tasks = {t["name"]: t for t in plugins_json["task_types"]}

    from_example = {name for name, t in tasks.items() if t["distribution"] == EXAMPLE_DIST}
    assert from_example == EXAMPLE_TASKS
    assert set(tasks) == EXAMPLE_TASKS
    assert tasks["example.sleep"]["async"] is True
    assert tasks["example.echo"]["async"] is False
    assert tasks["example.word_count"]["payload_model"] == "WordCountPayload"
    assert tasks["example.flaky"]["retry"] == "example.fibonacci"
    assert all(t["version"] == "0.1.0" for t in tasks.values())


def test_plugins_lists_the_five_retry_strategies_with_their_distribution(
    plugins_json: dict[str, Any],
) -> None:
    strategies = {s["name"]: s["distribution"] for s in plugins_json["retry_strategies"]}

    assert strategies == STRATEGIES


def test_plugins_lists_the_plugins_and_no_failures(plugins_json: dict[str, Any]) -> None:
    plugins = {p["name"]: p for p in plugins_json["plugins"]}

    assert plugins["example"]["distribution"] == EXAMPLE_DIST
    assert plugins["example"]["module"] == "taskrt_handlers_example.plugin"
    assert plugins["retry_strategies"]["distribution"] == "taskrt"
    assert plugins["retry_strategies"]["module"] == "taskrt_plugins.retry_strategies"
    assert plugins_json["failures"] == []


def test_plugins_table_for_people(tmp_path: Path) -> None:
    out = ok(taskrt_cli("plugins", cwd=tmp_path))

    for name in [*EXAMPLE_TASKS, *STRATEGIES]:
        assert name in out
    assert EXAMPLE_DIST in out


def test_plugins_creates_no_file_in_the_working_directory(tmp_path: Path) -> None:
    ok(taskrt_cli("plugins", "--json", cwd=tmp_path))
    ok(taskrt_cli("config", "show", "--json", cwd=tmp_path))

    assert list(tmp_path.iterdir()) == []


# --- config show ------------------------------------------------------------------------------


def test_config_show_masks_the_database_password(tmp_path: Path) -> None:
    env = {
        "TASKRT_DATABASE_URL": "postgresql://taskrt:hunter2@db.example:5432/taskrt",
        "REDIS_URL": "redis://:sesame@cache.example:6379/0",
    }

    result = taskrt_cli("config", "show", "--json", cwd=tmp_path, env=env)

    data = json.loads(ok(result))
    settings = data["settings"]
    assert settings["database_url"] == "postgresql+psycopg://taskrt:***@db.example:5432/taskrt"
    assert settings["redis_url"] == "redis://:***@cache.example:6379/0"
    assert data["backend"]["store"] == "postgresql"
    assert data["backend"]["queue"] == "redis"
    assert "hunter2" not in result.stdout + result.stderr
    assert "sesame" not in result.stdout + result.stderr


def test_config_show_table_masks_too(tmp_path: Path) -> None:
    env = {"TASKRT_DATABASE_URL": "postgresql://taskrt:hunter2@db.example:5432/taskrt"}

    result = taskrt_cli("config", "show", cwd=tmp_path, env=env)

    assert "db.example" in ok(result)
    assert "hunter2" not in result.stdout + result.stderr


def test_config_show_reads_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "taskrt.toml"
    config.write_text("worker_concurrency = 3\n")

    from_option = json.loads(
        ok(taskrt_cli("--config", str(config), "config", "show", "--json", cwd=tmp_path))
    )
    from_env = json.loads(
        ok(taskrt_cli("config", "show", "--json", cwd=tmp_path, env={"TASKRT_CONFIG": str(config)}))
    )

    assert from_option["settings"]["worker_concurrency"] == 3
    assert from_env["settings"]["worker_concurrency"] == 3


def test_a_bad_setting_is_a_short_error_naming_the_field(tmp_path: Path) -> None:
    result = taskrt_cli("config", "show", cwd=tmp_path, env={"TASKRT_WORKER_CONCURRENCY": "zero"})

    assert result.returncode != 0
    assert "worker_concurrency" in result.stderr
    assert "Traceback" not in result.stderr


# --- db ---------------------------------------------------------------------------------------


def test_db_upgrade_current_and_downgrade(empty_pg_url: str, tmp_path: Path) -> None:
    env = {"TASKRT_DATABASE_URL": empty_pg_url}

    before = ok(taskrt_cli("db", "current", cwd=tmp_path, env=env))
    assert "current: none" in before
    assert "needs `taskrt db upgrade`" in before
    assert _tables(empty_pg_url) == set()

    upgraded = ok(taskrt_cli("db", "upgrade", cwd=tmp_path, env=env))
    from taskrt.db.migrate import head_revision

    assert f"database at revision {head_revision()}" in upgraded
    assert {"tasks", "task_runs", "workers", "schedules", "outbox"} <= _tables(empty_pg_url)

    current = ok(taskrt_cli("db", "current", cwd=tmp_path, env=env))
    head = current.split("head:", 1)[1].split()[0]
    assert f"current: {head}" in current
    assert "up to date" in current

    ok(taskrt_cli("db", "downgrade", "base", "--yes", cwd=tmp_path, env=env))
    assert _tables(empty_pg_url) == set()
    assert "current: none" in ok(taskrt_cli("db", "current", cwd=tmp_path, env=env))
    assert list(tmp_path.iterdir()) == []  # it used PostgreSQL, not a stray SQLite file


def test_db_downgrade_asks_first(empty_pg_url: str, tmp_path: Path) -> None:
    env = {"TASKRT_DATABASE_URL": empty_pg_url}
    ok(taskrt_cli("db", "upgrade", cwd=tmp_path, env=env))

    refused = taskrt_cli("db", "downgrade", "base", cwd=tmp_path, env=env, stdin="n\n")

    assert refused.returncode != 0
    assert "tasks" in _tables(empty_pg_url)


def test_db_upgrade_with_no_settings_uses_a_sqlite_file_in_the_working_directory(
    tmp_path: Path,
) -> None:
    ok(taskrt_cli("db", "upgrade", cwd=tmp_path))

    assert (tmp_path / "taskrt.db").is_file()
    assert "tasks" in _tables(f"sqlite:///{tmp_path / 'taskrt.db'}")
