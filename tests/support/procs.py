"""Running the real ``taskrt`` CLI and worker processes from tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKRT = str(Path(sys.executable).with_name("taskrt"))


#: Variables a fresh shell would not have: taskrt's platform fallbacks, this checkout's
#: Python path and virtualenv, and the parent ``make``'s state (``make test`` runs pytest).
NOT_IN_A_FRESH_SHELL = frozenset(
    {"DATABASE_URL", "REDIS_URL", "PYTHONPATH", "VIRTUAL_ENV", "MAKELEVEL", "MAKEFLAGS", "MFLAGS"}
)


def bare_env() -> dict[str, str]:
    """This environment as a newcomer's fresh shell would have it: no ``TASKRT_*`` setting,
    no platform fallbacks, no Python path and no enclosing ``make``."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TASKRT_") and k not in NOT_IN_A_FRESH_SHELL
    }


def service_env(
    database_url: str,
    *,
    redis_url: str | None = None,
    redis_prefix: str | None = None,
    **settings: Any,
) -> dict[str, str]:
    """Environment for a taskrt subprocess: the test's database, Redis prefix and settings
    (keyword ``lease_ttl=1`` becomes ``TASKRT_LEASE_TTL=1``), plus the test task types."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TASKRT_") or k.startswith("TASKRT_TEST_")
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env["TASKRT_DATABASE_URL"] = database_url
    if redis_url:
        env["TASKRT_REDIS_URL"] = redis_url
    if redis_prefix:
        env["TASKRT_REDIS_PREFIX"] = redis_prefix
    env["TASKRT_PLUGINS_MODULES"] = "tests.support.testkit"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for key, value in settings.items():
        env[f"TASKRT_{key.upper()}"] = str(value)
    return env


def run_cli(
    args: list[str],
    env: Mapping[str, str],
    *,
    check: bool = True,
    timeout: float = 60,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``taskrt ARGS`` and return the completed process."""
    proc = subprocess.run(
        [TASKRT, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        cwd=REPO_ROOT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"taskrt {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


class WorkerProcess:
    """A ``taskrt worker`` subprocess whose output goes to a log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *args: str) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        """Start (or restart) the worker."""
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n==== start {self.starts} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [TASKRT, "worker", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit; return its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for(
    condition: Callable[[], Any], timeout: float, *, interval: float = 0.1, message: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {message or condition}; last value {last!r}"
    )
