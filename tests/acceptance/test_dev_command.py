"""``taskrt dev`` for real: started in an empty folder with no TASKRT_* settings, it serves the
API on the embedded SQLite default, runs tasks and schedules, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskrt.db.engine import create_engine
from taskrt.store import Store
from tests.support.procs import TASKRT, bare_env, wait_for

pytestmark = pytest.mark.slow

URL_LINE = re.compile(r"^\s*API:\s+(http://\S+)", re.MULTILINE)
KEY_LINE = re.compile(r"^\s*API key:\s+(trk_[0-9a-f]{8}_[A-Za-z0-9_-]{43})\s*$", re.MULTILINE)
STOP_WITHIN = 10.0


@dataclass
class DevProcess:
    """A ``taskrt dev`` subprocess whose stdout is collected line by line."""

    folder: Path
    args: list[str]
    proc: subprocess.Popen[str] | None = None
    out: list[str] = field(default_factory=list)

    def start(self) -> DevProcess:
        """Start it; a thread collects what it prints."""
        with (self.folder.parent / "dev.stderr").open("w") as log:
            self.proc = subprocess.Popen(
                [TASKRT, "dev", *self.args],
                cwd=self.folder,
                env=bare_env(),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        threading.Thread(target=self._collect, daemon=True).start()
        return self

    def _collect(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line)

    @property
    def stdout(self) -> str:
        """What it printed so far."""
        return "".join(self.out)

    def stderr(self) -> str:
        """Its log so far."""
        return (self.folder.parent / "dev.stderr").read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> tuple[str, str]:
        """The API URL and the key it printed, once it says it is running."""
        assert self.proc is not None

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"taskrt dev exited {self.proc.returncode}\n{self.stdout}\n{self.stderr()}"
                )
            return "Press Ctrl-C to stop." in self.stdout

        wait_for(ready, timeout, interval=0.05, message="taskrt dev to print its banner")
        url, key = URL_LINE.search(self.stdout), KEY_LINE.search(self.stdout)
        assert url is not None, self.stdout
        assert key is not None, self.stdout
        return url.group(1), key.group(1)

    def kill(self) -> None:
        """Kill it if it still runs, and close its pipe."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def empty_folder(tmp_path: Path) -> Path:
    """An empty working folder (its parent holds the process's log)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _wait_task(client: httpx.Client, task_id: str, status: str = "completed") -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}").json()
        return task if task["status"] == status else None

    found: dict[str, Any] = wait_for(done, 20, interval=0.1, message=f"task {task_id} {status}")
    return found


def test_dev_runs_api_scheduler_and_worker_and_stops_on_ctrl_c(empty_folder: Path) -> None:
    dev = DevProcess(empty_folder, ["--port", "0"]).start()
    try:
        url, key = dev.wait_ready()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert url.rsplit(":", 1)[1] != "0"
        assert "curl -s -X POST" in dev.stdout
        assert '"name": "example.echo"' in dev.stdout
        assert (empty_folder / "taskrt.db").is_file()  # the embedded default, schema created

        with httpx.Client(base_url=url, timeout=10) as anonymous:
            assert anonymous.get("/api/v1/tasks").status_code == 401
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            created = client.post(
                "/api/v1/tasks", json={"name": "example.echo", "payload": {"hello": "dev"}}
            )
            assert created.status_code == 201, created.text
            task = _wait_task(client, created.json()["id"])
            assert task["latest_run"]["result"] == {"hello": "dev"}

            # the scheduler runs too: an every-second schedule fires, and the worker runs it
            schedule = client.post(
                "/api/v1/schedules",
                json={"cron": "* * * * * *", "task": "example.echo", "payload": {"tick": 1}},
            )
            assert schedule.status_code == 201, schedule.text
            fires_url = f"/api/v1/schedules/{schedule.json()['id']}/fires"
            fires = wait_for(lambda: client.get(fires_url).json()["items"], 15, message="a fire")
            _wait_task(client, fires[-1]["task_id"])
            client.patch(f"/api/v1/schedules/{schedule.json()['id']}", json={"enabled": False})

        assert dev.proc is not None
        started = time.monotonic()
        dev.proc.send_signal(signal.SIGINT)
        code = dev.proc.wait(STOP_WITHIN)
        took = time.monotonic() - started
        assert code == 0, dev.stderr()
        assert took < STOP_WITHIN
        assert "unexpectedly" not in dev.stderr()
    finally:
        dev.kill()

    engine = create_engine(f"sqlite:///{empty_folder / 'taskrt.db'}")
    try:
        keys = Store(engine).list_api_keys()
    finally:
        engine.dispose()
    assert [(k.role, k.revoked) for k in keys] == [("admin", True)]  # made, then revoked


def test_sigterm_lets_the_running_task_finish_then_exits_0(empty_folder: Path) -> None:
    dev = DevProcess(empty_folder, ["--port", "0", "--concurrency", "2"]).start()
    try:
        url, key = dev.wait_ready()
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            created = client.post(
                "/api/v1/tasks", json={"name": "example.sleep", "payload": {"ms": 1500}}
            )
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            _wait_task(client, task_id, "running")
        assert dev.proc is not None
        dev.proc.send_signal(signal.SIGTERM)
        assert dev.proc.wait(STOP_WITHIN) == 0, dev.stderr()
    finally:
        dev.kill()

    engine = create_engine(f"sqlite:///{empty_folder / 'taskrt.db'}")
    try:
        task = Store(engine).get_tasks([uuid.UUID(task_id)])[uuid.UUID(task_id)]
    finally:
        engine.dispose()
    assert task.status.value == "completed"  # drained, not handed back


def test_a_port_in_use_is_refused_with_a_clear_message(empty_folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [TASKRT, "dev", "--port", str(port)],
            cwd=empty_folder,
            env=bare_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port 0" in result.stderr
