"""Events through the service: a scheduled fire is enqueued like any other task, so the enqueue
hooks and the "tasks created" and "schedule fired" events reach plugins once each (real
PostgreSQL and Redis, a plugin object registered in a test Runtime)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from taskrt import hookimpl, metrics
from taskrt.queue.redis_backend import RedisQueueBackend
from taskrt.records import EnqueueRequest, ScheduleFire, TaskInsert, TaskRecord
from taskrt.runtime import Runtime
from taskrt.schedule_service import ScheduleService
from taskrt.service import EnqueueSpec, TaskService
from taskrt.settings import Settings
from taskrt.store import Store
from tests.support.procs import wait_for


class Recorder:
    """Remembers every producing event it hears, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def before_enqueue(self, request: EnqueueRequest) -> None:
        self.calls.append(("before_enqueue", request))

    @hookimpl
    def after_enqueue(self, task: TaskRecord, created: bool) -> None:
        self.calls.append(("after_enqueue", (task, created)))

    @hookimpl
    def on_tasks_created(self, tasks: Sequence[TaskInsert]) -> None:
        self.calls.append(("on_tasks_created", list(tasks)))

    @hookimpl
    def on_schedule_fired(self, fires: Sequence[ScheduleFire]) -> None:
        self.calls.append(("on_schedule_fired", list(fires)))

    def named(self, hook: str) -> list[Any]:
        return [value for name, value in self.calls if name == hook]


def _service(
    settings: Settings, store: Store, backend: RedisQueueBackend, recorder: Recorder
) -> TaskService:
    return TaskService(Runtime.load(settings, plugins=[recorder]), store, backend)


def test_a_scheduled_fire_runs_the_enqueue_hooks_and_its_events_once(
    settings: Settings, store: Store, backend: RedisQueueBackend
) -> None:
    recorder = Recorder()
    schedules = ScheduleService(_service(settings, store, backend, recorder))
    schedule = schedules.create(
        cron="* * * * * *", timezone="UTC", task="testkit.chatty", payload={"n": 1}
    )
    created_before = metrics.REGISTRY.get_sample_value(
        "taskrt_tasks_created_total",
        {"tenant": "default", "queue": "default", "task_type": "testkit.chatty"},
    )

    fired = wait_for(
        lambda: [f for f in schedules.fire_due().fires if f.schedule_id == schedule.id],
        10,
        interval=0.2,
        message="the every-second schedule to fire",
    )

    (fire,) = fired
    (request,) = recorder.named("before_enqueue")
    assert (request.name, request.payload) == ("testkit.chatty", {"n": 1})
    assert request.trace_id == f"schedule-{schedule.id}"
    ((task, created),) = recorder.named("after_enqueue")
    assert (task.id, task.name, created) == (fire.task_id, "testkit.chatty", True)
    assert [[t.id for t in batch] for batch in recorder.named("on_tasks_created")] == [
        [fire.task_id]
    ]
    assert recorder.named("on_schedule_fired") == [[fire]]
    assert (fire.task_name, fire.queue) == ("testkit.chatty", "default")
    # the hooks come in order: before the insert, then after the commit
    assert [name for name, _ in recorder.calls] == [
        "before_enqueue",
        "on_tasks_created",
        "after_enqueue",
        "on_schedule_fired",
    ]
    # the built-in metrics subscriber counted the task the fire created
    after = metrics.REGISTRY.get_sample_value(
        "taskrt_tasks_created_total",
        {"tenant": "default", "queue": "default", "task_type": "testkit.chatty"},
    )
    assert (after or 0.0) - (created_before or 0.0) == 1
    assert store.get_task(fire.task_id).name == "testkit.chatty"


def test_tasks_created_is_one_event_per_batch_without_dedup_hits(
    settings: Settings, store: Store, backend: RedisQueueBackend
) -> None:
    recorder = Recorder()
    service = _service(settings, store, backend, recorder)
    key = f"k-{uuid.uuid4().hex[:8]}"
    first = service.enqueue(EnqueueSpec(name="testkit.chatty", dedup_key=key))

    results = service.enqueue_many(
        [
            EnqueueSpec(name="testkit.chatty", dedup_key=key),  # the live task: not created
            EnqueueSpec(name="testkit.chatty", payload={"n": 2}),
        ]
    )

    assert [r.created for r in results] == [False, True]
    batches = recorder.named("on_tasks_created")
    assert [[t.id for t in batch] for batch in batches] == [[first.id], [results[1].id]]
    assert len(recorder.named("after_enqueue")) == 3  # told about the dedup hit too
