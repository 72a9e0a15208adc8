"""Recording metrics: outcomes, retries and dead letters, lost runs, start latency, the
queue-depth gauges read at scrape time, the HTTP middleware's route templates, and the
exposition of a single process."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskrt import metrics
from taskrt.api.metrics import MetricsMiddleware
from taskrt.api.metrics import router as metrics_router
from taskrt.records import ClaimedRun, DispatchEntry, LostRun, QueueCounts, RunFinish
from taskrt.worker.execution import ActiveRun
from tests.observability.support import parse
from tests.support.runs import claimed_run


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _run(task_type: str, *, waited_since: timedelta = timedelta(0)) -> ClaimedRun:
    return claimed_run(task_type, queue="unit", waited=waited_since)


def test_written_outcomes_count_runs_retries_and_dead_letters() -> None:
    kind = f"unit.{uuid.uuid4().hex[:6]}"
    finishes = [
        RunFinish(run=_run(kind), status="succeeded"),
        RunFinish(run=_run(kind), status="failed", reason="timeout", retry_delay=1.0),
        RunFinish(run=_run(kind), status="failed", reason="retries_exhausted"),
        RunFinish(run=_run(kind), status="failed", reason="not_retried"),
        RunFinish(run=_run(kind), status="cancelled"),
    ]
    metrics.runs_written(finishes)
    labels = {"tenant": "default", "queue": "unit", "task_type": kind}
    assert _value("taskrt_runs_finished_total", outcome="succeeded", **labels) == 1
    assert _value("taskrt_runs_finished_total", outcome="failed", **labels) == 3
    assert _value("taskrt_runs_finished_total", outcome="cancelled", **labels) == 1
    assert _value("taskrt_runs_finished_total", outcome="lost", **labels) == 0  # exists at 0
    assert _value("taskrt_retries_total", reason="timeout", **labels) == 1
    assert _value("taskrt_dead_lettered_total", reason="retries_exhausted", **labels) == 1
    assert _value("taskrt_dead_lettered_total", reason="not_retried", **labels) == 1
    # the common reasons exist from the start, so increase() sees their first event
    assert (
        metrics.REGISTRY.get_sample_value(
            "taskrt_dead_lettered_total", {**labels, "reason": "lost"}
        )
        == 0
    )


def test_lost_runs_count_with_what_followed() -> None:
    kind = f"unit.{uuid.uuid4().hex[:6]}"

    def lost(next_run: DispatchEntry | None, outcome: str) -> LostRun:
        return LostRun(
            run_id=uuid.uuid4(),
            task_id=uuid.uuid4(),
            task_name=kind,
            queue="unit",
            attempt=1,
            next_run=next_run,
            outcome=outcome,
        )

    metrics.runs_lost(
        [
            lost(DispatchEntry(run_id=uuid.uuid4(), queue="unit"), "retry"),
            lost(None, "dead_letter"),
            lost(None, "cancelled"),
        ]
    )
    labels = {"tenant": "default", "queue": "unit", "task_type": kind}
    assert _value("taskrt_runs_finished_total", outcome="lost", **labels) == 3
    assert _value("taskrt_retries_total", reason="lost", **labels) == 1
    assert _value("taskrt_dead_lettered_total", reason="lost", **labels) == 1


def test_start_latency_and_duration_come_with_the_outcome() -> None:
    kind = f"unit.{uuid.uuid4().hex[:6]}"
    ran, never = _run(kind, waited_since=timedelta(seconds=3)), _run(kind)
    active = ActiveRun(run=ran)
    active.ran_seconds = 0.02
    finishes = [
        RunFinish(run=ran, status="succeeded", start_delay=0.5),
        RunFinish(run=never, status="cancelled"),  # cancelled before it started
    ]
    metrics.runs_written(finishes, [active, ActiveRun(run=never)])
    labels = {"tenant": "default", "queue": "unit", "task_type": kind}
    assert _value("taskrt_run_start_latency_seconds_count", **labels) == 1
    assert 3.4 < _value("taskrt_run_start_latency_seconds_sum", **labels) < 3.7
    assert _value("taskrt_run_start_latency_seconds_bucket", le="2.5", **labels) == 0
    assert _value("taskrt_run_start_latency_seconds_bucket", le="5.0", **labels) == 1
    assert _value("taskrt_run_start_latency_seconds_bucket", le="+Inf", **labels) == 1
    assert _value("taskrt_run_duration_seconds_count", **labels) == 1
    assert _value("taskrt_run_duration_seconds_bucket", le="0.01", **labels) == 0
    assert _value("taskrt_run_duration_seconds_bucket", le="0.025", **labels) == 1
    assert _value("taskrt_run_duration_seconds_sum", **labels) == pytest.approx(0.02)


def test_numbers_recorded_by_several_threads_add_up() -> None:
    kind = f"unit.{uuid.uuid4().hex[:6]}"

    def record() -> None:
        for _ in range(1000):
            metrics.runs_written([RunFinish(run=_run(kind), status="succeeded")])

    threads = [threading.Thread(target=record) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    labels = {"tenant": "default", "queue": "unit", "task_type": kind, "outcome": "succeeded"}
    assert _value("taskrt_runs_finished_total", **labels) == 4000


class _Counts:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def queues(self) -> Sequence[QueueCounts]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("database away")
        return [QueueCounts("a", 5, 1, 2, 3, False), QueueCounts("b", 0, 0, 0, 0, True)]


def test_queue_depth_is_read_at_scrape_time_and_cached_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = _Counts()
    metrics.watch_queues(source.queues)
    try:
        assert _value("taskrt_queue_depth", tenant="default", queue="a", state="ready") == 5
        assert _value("taskrt_queue_depth", tenant="default", queue="a", state="dlq") == 3
        assert _value("taskrt_queue_paused", tenant="default", queue="b") == 1
        _value("taskrt_queue_depth", tenant="default", queue="a", state="inflight")
        assert source.calls == 1  # one read serves scrapes within a second
        monkeypatch.setattr(metrics._QueueDepth, "CACHE_SECONDS", 0.0)
        source.fail = True
        # a store outage costs the depth series of that scrape, not the scrape
        assert (
            metrics.REGISTRY.get_sample_value(
                "taskrt_queue_depth", {"tenant": "default", "queue": "a", "state": "ready"}
            )
            is None
        )
        assert _value("taskrt_info", version=metrics.__version__) == 1
    finally:
        metrics.watch_queues(None)


def test_the_source_of_queue_depth_is_held_weakly() -> None:
    source = _Counts()
    metrics.watch_queues(source.queues)
    try:
        del source
        assert (
            metrics.REGISTRY.get_sample_value(
                "taskrt_queue_depth", {"tenant": "default", "queue": "a", "state": "ready"}
            )
            is None
        )
    finally:
        metrics.watch_queues(None)


def test_http_requests_are_labelled_by_route_template() -> None:
    app = FastAPI()
    prefix = f"/unit{uuid.uuid4().hex[:6]}"

    @app.get(prefix + "/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.include_router(metrics_router)
    app.add_middleware(MetricsMiddleware)
    route = prefix + "/items/{item_id}"
    with TestClient(app) as http:
        for item_id in (1, 2, 3):
            assert http.get(f"{prefix}/items/{item_id}").status_code == 200
        assert http.get(f"{prefix}/items/nope").status_code == 422
        assert http.get(f"{prefix}/nothing/here").status_code == 404
        assert http.request("BREW", f"{prefix}/items/1").status_code == 405
        scraped = parse(http.get("/metrics").text)
    assert scraped.value("taskrt_api_requests_total", method="GET", route=route, status="200") == 3
    assert scraped.value("taskrt_api_requests_total", method="GET", route=route, status="422") == 1
    assert scraped.value("taskrt_api_request_duration_seconds_count", route=route) == 5
    assert scraped.value("taskrt_api_requests_total", method="OTHER", route=route) == 1
    assert scraped.value("taskrt_api_requests_total", route="unmatched", status="404") >= 1
    assert not any(
        prefix + "/items/1" == labels["route"]
        for labels in scraped.labels_of("taskrt_api_requests_total")
    )
    # one process: the usual process metrics too, and no *_created series
    assert "process_cpu_seconds_total" in scraped.names()
    assert not any(name.endswith("_created") for name in scraped.names())
