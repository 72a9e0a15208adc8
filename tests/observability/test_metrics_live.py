"""Real `taskrt api` and two `taskrt worker` processes run a known mix of tasks; their /metrics
count exactly what happened, and the queue-depth gauges say what `taskrt queues` says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.support import ApiProcess, free_port
from tests.observability.support import Scrape, scrape, summed
from tests.support.db import Db
from tests.support.procs import WorkerProcess, run_cli, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

# task type -> (tasks, payload, expected runs: {outcome: n}, retries, dead letters by reason)
MIX: dict[str, dict[str, Any]] = {
    "example.echo": {
        "tasks": 6,
        "body": {"payload": {"hello": "metrics"}},
        "finished": {"succeeded": 6},
        "retries": 0,
        "dead": {},
    },
    "example.flaky": {
        "tasks": 3,
        "body": {"payload": {"succeed_on_attempt": 2}, "retry_params": {"base": 0.05}},
        "finished": {"failed": 3, "succeeded": 3},
        "retries": 3,
        "dead": {},
    },
    "testkit.fail": {  # max_retries=2: three failed runs, then the DLQ
        "tasks": 2,
        "body": {},
        "finished": {"failed": 6},
        "retries": 4,
        "dead": {"retries_exhausted": 2},
    },
    "testkit.nonretryable": {
        "tasks": 1,
        "body": {},
        "finished": {"failed": 1},
        "retries": 0,
        "dead": {"non_retryable": 1},
    },
}


@pytest.fixture
def stack(service_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An admin key, the API, and two workers serving metrics on ports of their own."""
    env = dict(service_env)
    key = run_cli(["apikey", "create", "--name", "obs", "--role", "admin"], env).stdout.strip()
    api = ApiProcess(env, tmp_path / "api.log")
    ports = [free_port(), free_port()]
    workers = [
        WorkerProcess(
            env, tmp_path / f"w{i}.log", "--name", f"w{i}", "-c", "4", "--metrics-port", str(port)
        )
        for i, port in enumerate(ports)
    ]
    try:
        api.start()
        for worker in workers:
            worker.start()
        urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
        wait_for(lambda: all(_answers(url) for url in urls), 30, message="worker metrics up")
        yield {"env": env, "key": key, "api": api, "worker_urls": urls, "workers": workers}
    finally:
        for worker in workers:
            worker.stop()
        api.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _create(http: httpx.Client, name: str, **body: Any) -> str:
    response = http.post("/api/v1/tasks", json={"name": name, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _expected_worker_numbers() -> dict[tuple[str, ...], float]:
    expected: dict[tuple[str, ...], float] = {}
    for task_type, spec in MIX.items():
        runs = sum(spec["finished"].values())
        for outcome in ("succeeded", "failed", "lost", "cancelled"):
            expected[("taskrt_runs_finished_total", task_type, outcome)] = spec["finished"].get(
                outcome, 0
            )
        expected[("taskrt_retries_total", task_type)] = spec["retries"]
        expected[("taskrt_dead_lettered_total", task_type)] = sum(spec["dead"].values())
        for reason, count in spec["dead"].items():
            expected[("taskrt_dead_lettered_total", task_type, reason)] = count
        expected[("taskrt_run_start_latency_seconds_count", task_type)] = runs
        expected[("taskrt_run_duration_seconds_count", task_type)] = runs
    return expected


def _worker_numbers(scrapes: list[Scrape]) -> dict[tuple[str, ...], float]:
    got: dict[tuple[str, ...], float] = {}
    for key in _expected_worker_numbers():
        name, task_type, *rest = key
        labels = {"queue": "default", "task_type": task_type}
        if name == "taskrt_runs_finished_total":
            labels["outcome"] = rest[0]
        elif rest:
            labels["reason"] = rest[0]
        got[key] = summed(scrapes, name, **labels)
    return got


def test_counters_equal_what_happened_and_depth_matches_taskrt_queues(
    stack: dict[str, Any], db: Db
) -> None:
    api: ApiProcess = stack["api"]
    with api.client(Authorization=f"Bearer {stack['key']}") as http:
        ids = [
            _create(http, task_type, **spec["body"])
            for task_type, spec in MIX.items()
            for _ in range(spec["tasks"])
        ]
        wait_for(
            lambda: (
                db.scalar("SELECT count(*) FROM tasks WHERE status IN ('completed', 'failed')")
                == len(ids)
            ),
            60,
            message="every task of the mix finished",
        )

        # the workers: outcomes, retries, dead letters, one start and one duration per run
        expected = _expected_worker_numbers()
        scrapes: list[Scrape] = []

        def workers_agree() -> bool:
            scrapes[:] = [scrape(url) for url in stack["worker_urls"]]
            return _worker_numbers(scrapes) == expected

        wait_for(workers_agree, 15, message="worker counters equal to the mix")
        # the work was shared, and each worker reports its own slots
        assert all(s.value("taskrt_runs_finished_total") > 0 for s in scrapes)
        for i, one in enumerate(scrapes):
            assert one.value("taskrt_worker_slots_capacity", worker=f"w{i}") == 4
            assert one.value("taskrt_worker_heartbeat_age_seconds", worker=f"w{i}") < 5
        # the database agrees with the counters
        assert db.scalar("SELECT count(*) FROM task_runs") == sum(
            expected[("taskrt_run_duration_seconds_count", t)] for t in MIX
        )

        # the API: the tasks it created and the requests that created them
        api_metrics = scrape(f"{api.url}/metrics")
        for task_type, spec in MIX.items():
            assert (
                api_metrics.value(
                    "taskrt_tasks_created_total", queue="default", task_type=task_type
                )
                == spec["tasks"]
            ), task_type
        assert api_metrics.value(
            "taskrt_api_requests_total", method="POST", route="/api/v1/tasks", status="201"
        ) == len(ids)
        assert api_metrics.value(
            "taskrt_api_request_duration_seconds_count", method="POST", route="/api/v1/tasks"
        ) == len(ids)
        # routes are templates: no task id ever becomes a label value
        routes = {labels["route"] for labels in api_metrics.labels_of("taskrt_api_requests_total")}
        assert routes <= {"/healthz", "/api/v1/tasks", "/metrics"}, routes

        # queue depth: a paused queue with ready runs, a delayed run, a running one, the DLQ
        run_cli(["queue", "pause", "held"], stack["env"])
        for _ in range(3):
            _create(http, "example.echo", queue="held")
        _create(http, "example.echo", delay=3600)
        blocker = _create(http, "testkit.block", payload={"seconds": 60})
        wait_for(
            lambda: (
                db.scalar(
                    "SELECT count(*) FROM task_runs WHERE task_id = :t AND status = 'running'",
                    t=blocker,
                )
                == 1
            ),
            20,
            message="the blocking task running",
        )
        shown = json.loads(run_cli(["queues", "--json"], stack["env"]).stdout)
        assert {q["name"] for q in shown} >= {"default", "held"}
        assert next(q for q in shown if q["name"] == "held")["ready"] == 3

        def depth_matches() -> bool:
            got = scrape(f"{api.url}/metrics")
            return all(
                got.value("taskrt_queue_depth", queue=q["name"], state=state) == q[state]
                and got.value("taskrt_queue_paused", queue=q["name"]) == int(q["paused"])
                for q in shown
                for state in ("ready", "delayed", "inflight", "dlq")
            ) and len(got.labels_of("taskrt_queue_paused")) == len(shown)

        wait_for(depth_matches, 10, message=f"queue depth gauges equal to {shown}")
        by_name = {q["name"]: q for q in shown}
        assert by_name["default"]["dlq"] == 3
        assert by_name["default"]["delayed"] == 1
        assert by_name["default"]["inflight"] == 1
        assert by_name["held"]["paused"] is True
        # the blocking run holds one slot of one worker
        wait_for(
            lambda: (
                summed([scrape(u) for u in stack["worker_urls"]], "taskrt_worker_slots_busy") == 1
            ),
            10,
            message="one busy slot",
        )
        http.post(f"/api/v1/tasks/{blocker}/cancel")
