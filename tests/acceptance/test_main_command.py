"""The README's main command works on a fresh machine with no servers and no settings.

The main command is ``make demo``: ``make install`` (create ``.venv``, pip-install taskrt and the
example handlers), then ``.venv/bin/taskrt demo``, which processes a batch of example tasks on the
embedded SQLite default with a progress bar and a summary. The install step needs the package
index, so the test checks with ``make -n demo`` that the target runs exactly those commands, and
runs the demo itself with this checkout's installed ``taskrt``:

- from a fresh copy of the repository (its files as ``git ls-files`` lists them: tracked ones, and
  new ones not ignored, i.e. what a clone would hold once they are committed), so nothing left in
  this checkout (a ``taskrt.db``, a ``taskrt.toml``) can help;
- inside a fresh network namespace (``unshare --net``): its only interface is a loopback that is
  down, so no PostgreSQL, Redis or any other server is reachable at any address;
- with an environment stripped of every ``TASKRT_*`` variable and of ``DATABASE_URL`` and
  ``REDIS_URL``.

Creating a network namespace needs root (or CAP_SYS_ADMIN); without it the test fails saying so,
it does not skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskrt.db.engine import create_engine
from tests.support.procs import bare_env

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKRT = Path(sys.executable).with_name("taskrt")
TASKS = 60
TIMEOUT = 300


def fresh_copy(target: Path) -> Path:
    """Copy the repository's files (as a clone would have them) into ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copied = 0
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination, follow_symlinks=False)
        copied += 1
    assert copied > 100, f"only {copied} files listed by git ls-files"
    return target


def isolated(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a new network namespace with the bare environment."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail(
            "this test needs `unshare` (util-linux) to cut the network off; install it "
            "(apt-get install util-linux). It fails rather than skips."
        )
    return subprocess.run(
        [unshare, "--net", "--", *command],
        cwd=cwd,
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture
def fresh_checkout(tmp_path: Path) -> Path:
    """A fresh copy of the repository, in a network namespace that works on this machine."""
    probe = isolated("true", cwd=tmp_path)
    if probe.returncode != 0:
        pytest.fail(
            "cannot create a network namespace with `unshare --net` "
            f"(exit {probe.returncode}: {probe.stderr.strip()}); this test needs root or "
            "CAP_SYS_ADMIN. It fails rather than skips."
        )
    return fresh_copy(tmp_path / "taskrt")


def test_no_server_is_reachable_inside_the_namespace(fresh_checkout: Path) -> None:
    probe = isolated(
        sys.executable,
        "-c",
        "import socket\n"
        "for port in (5432, 6379):\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
        "        print(port, 'reachable')\n"
        "    except OSError as exc:\n"
        "        print(port, 'unreachable', type(exc).__name__)\n",
        cwd=fresh_checkout,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.count("unreachable") == 2, probe.stdout


def test_the_main_command_processes_the_example_batch_without_any_server(
    fresh_checkout: Path,
) -> None:
    assert not (fresh_checkout / "taskrt.db").exists()
    result = isolated(str(TASKRT), "demo", "--tasks", str(TASKS), cwd=fresh_checkout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "store: sqlite, queues: sql (sqlite)" in result.stdout
    assert "Summary" in result.stdout
    for task_type in ("example.echo", "example.word_count", "example.sleep", "example.flaky"):
        assert task_type in result.stdout
    assert f"{TASKS} of {TASKS} tasks completed" in result.stdout, output

    database = fresh_checkout / "taskrt.db"
    assert database.is_file()
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(sa.text("SELECT status, count(*) FROM tasks GROUP BY status")).all()
            )
    finally:
        engine.dispose()
    assert statuses == {"completed": TASKS}


def test_make_demo_installs_then_runs_the_demo(fresh_checkout: Path) -> None:
    result = subprocess.run(
        ["make", "-n", "demo"],
        cwd=fresh_checkout,
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    assert re.fullmatch(r"\S*python3\S* -m venv \.venv", lines[0])
    assert lines[1] == ".venv/bin/python -m pip install -e '.[dev]' -e ./handlers_example"
    assert lines[2] == ".venv/bin/taskrt demo"


def test_the_readme_names_make_demo_as_the_main_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- main-command[^>]*-->\s*```bash\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README.md has no main-command block"
    assert block.group(1).strip() == "make demo"
