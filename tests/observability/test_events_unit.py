"""Domain events: the run events are emitted once per batch, the retry and dead-letter events
are built from written outcomes and lost runs alike, and taskrt's own metrics and log lines
hear them as plugins do (before any third-party plugin)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from taskrt import hookimpl, metrics
from taskrt.events import Events
from taskrt.records import (
    ClaimedRun,
    DeadLetterEvent,
    DispatchEntry,
    LostRun,
    RetryEvent,
    RunFinish,
    ScheduleFire,
)
from taskrt.runtime import Runtime
from taskrt.settings import Settings
from tests.support.runs import claimed_run


def _run(task_type: str) -> ClaimedRun:
    return claimed_run(task_type, queue="events")


class Listener:
    """A third-party plugin of the run events."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def on_runs_finished(
        self, finishes: Sequence[RunFinish], ran_seconds: Mapping[uuid.UUID, float | None]
    ) -> None:
        # the built-in metrics subscriber ran first: the batch is counted already
        kind = finishes[0].run.name
        counted = metrics.REGISTRY.get_sample_value(
            "taskrt_runs_finished_total",
            {"tenant": "default", "queue": "events", "task_type": kind, "outcome": "succeeded"},
        )
        self.calls.append(("on_runs_finished", (len(finishes), dict(ran_seconds), counted)))

    @hookimpl
    def on_runs_lost(self, lost: Sequence[LostRun]) -> None:
        self.calls.append(("on_runs_lost", len(lost)))

    @hookimpl
    def on_retry(self, event: RetryEvent) -> None:
        self.calls.append(("on_retry", event))

    @hookimpl
    def on_dead_letter(self, event: DeadLetterEvent) -> None:
        self.calls.append(("on_dead_letter", event))


def _events(*plugins: object) -> Events:
    runtime = Runtime.load(Settings(), plugins=plugins, entry_points=False)
    return Events(runtime.observers)


def test_written_outcomes_are_one_batch_event_then_each_retry_and_dead_letter() -> None:
    kind = f"ev.{uuid.uuid4().hex[:6]}"
    listener = Listener()
    ok, retried, dead = _run(kind), _run(kind), _run(kind)
    next_run = uuid.uuid4()
    finishes = [
        RunFinish(run=ok, status="succeeded"),
        RunFinish(
            run=retried,
            status="failed",
            reason="timeout",
            retry_delay=2.0,
            next_run_id=next_run,
            error_type="TimeoutError",
        ),
        RunFinish(run=dead, status="failed", reason="non_retryable", error_message="no"),
    ]

    _events(listener).runs_finished(finishes, {ok.run_id: 0.01}, uuid.uuid4())

    names = [name for name, _ in listener.calls]
    assert names == ["on_runs_finished", "on_retry", "on_dead_letter"]
    assert listener.calls[0][1] == (3, {ok.run_id: 0.01}, 1.0)
    assert listener.calls[1][1] == RetryEvent(
        task_id=retried.task_id,
        task_name=kind,
        queue="events",
        failed_run_id=retried.run_id,
        attempt=1,
        next_run_id=next_run,
        delay=2.0,
        reason="timeout",
        error_type="TimeoutError",
    )
    assert listener.calls[2][1] == DeadLetterEvent(
        task_id=dead.task_id,
        task_name=kind,
        queue="events",
        run_id=dead.run_id,
        attempt=1,
        reason="non_retryable",
        error_message="no",
    )
    labels = {"tenant": "default", "queue": "events", "task_type": kind}
    assert metrics.REGISTRY.get_sample_value("taskrt_run_duration_seconds_count", labels) == 1
    assert metrics.REGISTRY.get_sample_value(
        "taskrt_dead_lettered_total", {**labels, "reason": "non_retryable"}
    )


def test_lost_runs_give_the_same_retry_and_dead_letter_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kind = f"ev.{uuid.uuid4().hex[:6]}"
    listener = Listener()
    retried, dead = uuid.uuid4(), uuid.uuid4()
    lost = [
        LostRun(
            run_id=retried,
            task_id=uuid.uuid4(),
            task_name=kind,
            queue="events",
            attempt=1,
            next_run=DispatchEntry(run_id=uuid.uuid4(), queue="events"),
        ),
        LostRun(
            run_id=dead,
            task_id=uuid.uuid4(),
            task_name=kind,
            queue="events",
            attempt=3,
            next_run=None,
            outcome="dead_letter",
        ),
    ]

    with caplog.at_level(logging.WARNING, logger="taskrt.maintenance"):
        _events(listener).runs_lost(lost)

    assert [name for name, _ in listener.calls] == ["on_runs_lost", "on_retry", "on_dead_letter"]
    retry, dead_letter = listener.calls[1][1], listener.calls[2][1]
    assert (retry.failed_run_id, retry.reason, retry.delay) == (retried, "lost", 0.0)
    assert (dead_letter.run_id, dead_letter.reason, dead_letter.attempt) == (dead, "lost", 3)
    labels = {"tenant": "default", "queue": "events", "task_type": kind}
    assert (
        metrics.REGISTRY.get_sample_value(
            "taskrt_runs_finished_total", {**labels, "outcome": "lost"}
        )
        == 2
    )
    # the built-in log subscriber wrote the reaper's lines
    assert [r.name for r in caplog.records if kind in r.getMessage()] == ["taskrt.maintenance"] * 2


def test_schedule_fires_are_counted_and_logged_by_the_subscribers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kind = f"ev.{uuid.uuid4().hex[:6]}"
    fire = ScheduleFire(
        schedule_id=uuid.uuid4(),
        fire_at=datetime(2026, 1, 1, tzinfo=UTC),
        task_id=uuid.uuid4(),
        task_name=kind,
        queue="events",
        lag=0.3,
    )

    with caplog.at_level(logging.INFO, logger="taskrt.scheduler"):
        _events().schedule_fired([fire])

    labels = {"tenant": "default", "queue": "events", "task_type": kind}
    assert metrics.REGISTRY.get_sample_value("taskrt_scheduler_fires_total", labels) == 1
    assert metrics.REGISTRY.get_sample_value("taskrt_scheduler_fire_lag_seconds_sum", labels) == (
        pytest.approx(0.3)
    )
    (line,) = [r.getMessage() for r in caplog.records if r.name == "taskrt.scheduler"]
    assert line == (
        f"schedule {fire.schedule_id} fired slot 2026-01-01T00:00:00+00:00 as task {fire.task_id}"
    )


def test_nobody_listening_costs_no_events() -> None:
    runtime = Runtime.load(Settings(), entry_points=False)

    # the built-in subscribers listen to the batch events only
    assert runtime.observers.has("on_runs_finished")
    assert not runtime.observers.has("on_retry")
    assert not runtime.observers.has("before_execute")
    assert runtime.loaded.infos == {}  # and are not listed as loaded plugins
