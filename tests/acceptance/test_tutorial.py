"""The plugin tutorial works as written, in a fresh virtualenv, from an empty folder.

``docs/tutorial-write-a-plugin.md`` marks each file it shows and each command it runs (see
``tutorial_steps``); this test reads them out of the markdown, so a tutorial whose code drifts
from taskrt fails here. Step 0 (an environment with taskrt) is done as ``scripts/check_wheel.sh``
does it: a new ``python -m venv`` with taskrt installed from this checkout, not editable, and
nothing else. Then, in an empty folder and with a fresh shell's environment (no ``TASKRT_*``
variable: the embedded SQLite default), every marked step in order: write the plugin's files,
``pip install -e '.[test]'``, ``taskrt plugins``, its pytest, a real ``taskrt worker`` in the
background, an invoice enqueued and its result read, an invoice that goes to the dead-letter
queue, the fix, the worker restarted with Ctrl-C, and the replay.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.tutorial_steps import (
    Shell,
    Step,
    Terminal,
    apply_file_step,
    check_output,
    parse_steps,
)
from tests.support.procs import REPO_ROOT, bare_env

pytestmark = pytest.mark.slow

TUTORIAL = REPO_ROOT / "docs" / "tutorial-write-a-plugin.md"
RESULT_TIMEOUT = 60


def tutorial_steps() -> list[Step]:
    """The tutorial's marked steps."""
    return parse_steps(TUTORIAL.read_text(encoding="utf-8"))


def test_the_tutorial_marks_every_step_the_walk_needs() -> None:
    steps = tutorial_steps()
    commands = "\n".join(s.body for s in steps if s.kind in ("run", "worker"))
    files = {s.path for s in steps if s.kind in ("file", "append")}
    assert files == {"pyproject.toml", "src/acme_handlers/plugin.py", "tests/test_plugin.py"}
    for command in (
        "pip install -e '.[test]'",
        "python -m pytest",
        "taskrt worker --queues billing",
        "taskrt enqueue acme.invoice.total",
        "--result",
        "taskrt dlq list billing",
        "taskrt dlq replay $TASK",
    ):
        assert command in commands, f"the tutorial no longer runs {command!r}"
    assert [s.kind for s in steps].count("worker") == 2  # started, then restarted after the fix
    assert any(s.kind == "replace" for s in steps)  # the fix


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv holding taskrt, installed from this checkout as a user would."""
    venv = tmp_path_factory.mktemp("tutorial") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env=bare_env(),
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def reader_env(venv: Path) -> dict[str, str]:
    """A fresh shell with ``venv`` activated: no TASKRT_* setting, the venv first on PATH."""
    env = bare_env()
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["COLUMNS"] = "200"  # a wide terminal, so tables do not wrap the text a step waits for
    return env


def run_step(step: Step, shell: Shell) -> subprocess.CompletedProcess[str]:
    """Run a ``run`` step; AssertionError with its output if it fails."""
    if step.retry:
        proc = shell.run_until(step.body, step.until, timeout=RESULT_TIMEOUT)
    else:
        proc = shell.run(step.body)
    assert proc.returncode == 0, (
        f"tutorial line {step.line}: {step.body.strip()} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    assert step.until in proc.stdout, f"line {step.line}: no {step.until!r} in\n{proc.stdout}"
    return proc


def test_the_tutorial_works_as_written(fresh_venv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "projects"
    folder.mkdir()
    shell = Shell(folder, reader_env(fresh_venv), tmp_path / "shell-state")
    second_terminal = Terminal(tmp_path / "worker.log")
    last: subprocess.CompletedProcess[str] | None = None
    try:
        for step in tutorial_steps():
            if step.kind in ("file", "append", "replace"):
                apply_file_step(step, shell.cwd)
            elif step.kind == "run":
                last = run_step(step, shell)
            elif step.kind == "output":
                assert last is not None, f"line {step.line}: output before any command"
                check_output(step, last.stdout)
            else:
                second_terminal.start(step.body, shell, ready="started")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- the worker's terminal:\n{second_terminal.log()}"
        ) from None
    finally:
        stopped = second_terminal.stop()
    assert stopped == 0, second_terminal.log()

    # It all happened in the fresh venv, on the embedded default, in the tutorial's folder.
    assert shell.cwd == folder / "acme-handlers"
    assert (shell.cwd / "taskrt.db").is_file()
    where = shell.run("command -v taskrt; python -c 'import taskrt; print(taskrt.__file__)'")
    assert where.stdout.splitlines()[0] == str(fresh_venv / "bin" / "taskrt"), where.stdout
    assert where.stdout.splitlines()[1].startswith(str(fresh_venv)), where.stdout

    plugins = json.loads(shell.run("taskrt plugins --json").stdout)
    tasks = {t["name"]: t["distribution"] for t in plugins["task_types"]}
    assert tasks == {"acme.invoice.total": "acme-handlers"}  # nothing else installed
    assert plugins["failures"] == []

    # The replayed task ($TASK, Alan's invoice): a dead-lettered first run, then the replay.
    shown = json.loads(shell.run("taskrt task show $TASK --json").stdout)
    assert shown["status"] == "completed"
    runs = sorted(shown["runs"], key=lambda run: run["attempt"])
    assert [run["status"] for run in runs] == ["failed", "succeeded"], runs
    assert "no account for customer 'Alan'" in runs[0]["error_message"]
    dead = shell.run("taskrt dlq list billing --json")
    assert json.loads(dead.stdout) == [], dead.stdout
