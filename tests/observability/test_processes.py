"""How the services start their logs and metrics: `taskrt api --workers N` adds up its
processes' counters, `--log-format` wins over TASKRT_LOG_FORMAT, a taken metrics port and a
stray PROMETHEUS_MULTIPROC_DIR are refused with a message that says what to do."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.api.support import ApiProcess, free_port
from tests.observability.support import json_lines, scrape
from tests.support.procs import REPO_ROOT, TASKRT, WorkerProcess, run_cli, wait_for

pytestmark = pytest.mark.services


def _leftover_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("taskrt-api-metrics-*")}


def test_every_api_process_answers_metrics_with_the_sum_of_all(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    key = run_cli(["apikey", "create", "--name", "mp", "--role", "producer"], service_env).stdout
    before = _leftover_dirs()
    api = ApiProcess(service_env, tmp_path / "api.log", "--workers", "3").start(timeout=60)
    try:
        created = 30
        for _ in range(created):  # a new connection each: the kernel spreads them
            response = httpx.post(
                f"{api.url}/api/v1/tasks",
                json={"name": "example.echo"},
                headers={"X-API-Key": key.strip()},
                timeout=10,
            )
            assert response.status_code == 201, response.text
        pids = {
            line["message"].rsplit("[", 1)[1].rstrip("]")
            for line in json_lines(api.log())
            if line["message"].startswith("Started server process")
        }
        assert len(pids) == 3, api.log()
        for _ in range(9):  # whichever process answers, it reports all of them
            got = scrape(f"{api.url}/metrics")
            assert got.value("taskrt_tasks_created_total", task_type="example.echo") == created
            assert (
                got.value(
                    "taskrt_api_requests_total", method="POST", route="/api/v1/tasks", status="201"
                )
                == created
            )
            assert (
                got.value(
                    "taskrt_api_request_duration_seconds_count",
                    method="POST",
                    route="/api/v1/tasks",
                )
                == created
            )
            assert got.value("taskrt_queue_depth", queue="default", state="ready") == created
    finally:
        assert api.stop() is not None
    assert _leftover_dirs() == before, "the API's metrics folder was left behind"


def test_log_format_option_wins_over_the_setting(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "TASKRT_LOG_FORMAT": "json"}
    worker = WorkerProcess(env, tmp_path / "w.log", "--name", "texty", "--log-format", "text")
    worker.start()
    try:
        wait_for(lambda: "started" in worker.log(), 20, message="the worker started")
    finally:
        assert worker.stop() == 0
    started = next(line for line in worker.log().splitlines() if "started:" in line)
    assert not started.startswith("{")
    assert " INFO taskrt.worker: worker texty " in started
    assert "worker_id=" in started
    assert not json_lines(worker.log())


def test_a_taken_metrics_port_is_refused_before_the_worker_starts(
    service_env: dict[str, str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(["worker", "--metrics-port", str(port)], service_env, check=False)
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "--metrics-port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_a_shared_multiprocess_folder_is_refused(
    service_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    env = {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = run_cli([command], env, check=False, timeout=30)
    assert result.returncode == 1
    assert "PROMETHEUS_MULTIPROC_DIR is set" in result.stderr
    assert not list(tmp_path.iterdir())


def test_the_scheduler_serves_its_metrics(service_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**service_env, "TASKRT_METRICS_PORT": str(port), "TASKRT_SCHEDULER_TICK": "0.1"}
    every_second = ["schedules", "add", "--cron", "* * * * * *", "--task", "example.echo"]
    run_cli(every_second, env)
    log_path = tmp_path / "scheduler.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [TASKRT, "scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def fired() -> bool:
            try:
                got = scrape(url)
            except httpx.HTTPError:
                return False
            return got.value("taskrt_scheduler_fires_total", task_type="example.echo") >= 2

        wait_for(fired, 20, message="the scheduler fired twice")
        got = scrape(url)
        assert got.value("taskrt_tasks_created_total", task_type="example.echo") >= 2
        assert got.value("taskrt_scheduler_fire_lag_seconds_count") >= 2
        assert got.value("taskrt_scheduler_last_tick_timestamp_seconds") > 1.7e9
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    lines = json_lines(log_path.read_text())
    assert lines
    assert {line["service"] for line in lines} == {"scheduler"}
