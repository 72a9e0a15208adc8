"""The service layer for schedules: create, change, delete, preview and fire them.

Firing creates tasks, so it goes through :class:`~taskrt.service.TaskService` like any producer
(its enqueue hooks and events included): one transaction records the fire (unique per schedule
and fire time), the task, its run and its outbox row; the dispatch follows the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from taskrt.exceptions import ValidationError
from taskrt.ids import uuid7
from taskrt.jsonlimits import text_problems
from taskrt.records import (
    Actor,
    Enqueued,
    FireRecord,
    ScheduleFire,
    ScheduleRecord,
    TaskInsert,
    TaskKind,
)
from taskrt.scheduler.cron import CronSchedule
from taskrt.scheduler.misfire import MISFIRE_POLICIES, plan_fires
from taskrt.service import EnqueueSpec, TaskService


@lru_cache(maxsize=1024)
def cron_schedule(cron: str, timezone: str) -> CronSchedule:
    """A validated, cached CronSchedule."""
    return CronSchedule(cron, timezone)


def check_misfire_policy(policy: str) -> str:
    """Return ``policy`` if known, else raise ValidationError."""
    if policy not in MISFIRE_POLICIES:
        raise ValidationError(
            f"unknown misfire policy {policy!r}: use one of {', '.join(MISFIRE_POLICIES)}",
            [{"loc": ["misfire_policy"], "msg": "unknown misfire policy"}],
        )
    return policy


def check_texts(**fields: str | None) -> None:
    """ValidationError naming each field whose text no store can hold (lone surrogates, NUL)."""
    problems = [p for key, value in fields.items() for p in text_problems(value, [key])]
    if problems:
        raise ValidationError(f"{problems[0]['loc'][0]}: {problems[0]['msg']}", problems)


@dataclass(slots=True)
class FireReport:
    """What one scheduler tick fired."""

    fires: list[ScheduleFire] = field(default_factory=list)
    """Each fire this tick won, with the task it created."""
    schedules: int = 0

    @property
    def fired(self) -> list[tuple[uuid.UUID, datetime, uuid.UUID]]:
        """(schedule id, fire time, task id) of each fire this tick won."""
        return [(f.schedule_id, f.fire_at, f.task_id) for f in self.fires]


class ScheduleService:
    """Schedules, validated and written in one place; the scheduler calls :meth:`fire_due`."""

    def __init__(self, tasks: TaskService) -> None:
        self.tasks = tasks
        self.store = tasks.store
        self.settings = tasks.settings

    # --- create and change ----------------------------------------------------------------
    def create(
        self,
        *,
        cron: str,
        timezone: str,
        task: str,
        payload: Any = None,
        queue: str | None = None,
        misfire_policy: str = "coalesce",
        name: str | None = None,
        enabled: bool = True,
        max_retries: int | None = None,
        retry: str | None = None,
        retry_params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        actor: Actor | None = None,
    ) -> ScheduleRecord:
        """Validate and store a schedule; nothing is stored if anything is wrong."""
        check_texts(name=name, cron=cron, timezone=timezone, misfire_policy=misfire_policy)
        schedule = cron_schedule(cron, timezone)
        check_misfire_policy(misfire_policy)
        template = self.tasks.prepare(
            EnqueueSpec(
                name=task,
                payload=payload,
                queue=queue,
                max_retries=max_retries,
                retry=retry,
                retry_params=retry_params,
                timeout=timeout,
                priority=priority,
            )
        )
        template = replace(template, kind=TaskKind.SCHEDULED)
        return self.store.create_schedule(
            template,
            name=name,
            cron=cron,
            timezone=timezone,
            enabled=enabled,
            misfire_policy=misfire_policy,
            next_fire_at=schedule.next_after(self.store.now()),
            actor=actor,
        )

    def get(self, schedule_id: uuid.UUID) -> ScheduleRecord:
        """One schedule."""
        return self.store.get_schedule(schedule_id)

    def list_schedules(
        self, *, limit: int = 100, after: uuid.UUID | None = None
    ) -> list[ScheduleRecord]:
        """Schedules, oldest first."""
        return self.store.list_schedules(limit=limit, after=after)

    def fires(self, schedule_id: uuid.UUID, *, limit: int = 100) -> list[FireRecord]:
        """Recent fires of a schedule, newest first."""
        self.store.get_schedule(schedule_id)
        return self.store.fires(schedule_id, limit=limit)

    def update(
        self,
        schedule_id: uuid.UUID,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        enabled: bool | None = None,
        misfire_policy: str | None = None,
        name: str | None = None,
        payload: Any = None,
        set_payload: bool = False,
        queue: str | None = None,
        max_retries: int | None = None,
        retry: str | None = None,
        retry_params: Mapping[str, Any] | None = None,
        actor: Actor | None = None,
    ) -> ScheduleRecord:
        """Change a schedule. A new cron expression or zone takes effect from now; enabling
        again keeps the stored next fire time, so slots missed while disabled follow the
        misfire policy. New template settings (payload, queue, retries) apply to the tasks
        fired from now on. A new ``retry`` without ``retry_params`` starts from none; new
        ``retry_params`` alone apply to the current strategy."""
        check_texts(name=name, cron=cron, timezone=timezone, misfire_policy=misfire_policy)
        current = self.store.get_schedule(schedule_id)
        changes: dict[str, Any] = {}
        template: dict[str, Any] = {}
        if cron is not None or timezone is not None:
            schedule = cron_schedule(cron or current.cron, timezone or current.timezone)
            changes.update(
                cron_expr=schedule.expression,
                timezone=schedule.timezone,
                next_fire_at=schedule.next_after(self.store.now()),
            )
        if misfire_policy is not None:
            changes["misfire_policy"] = check_misfire_policy(misfire_policy)
        if name is not None:
            changes["name"] = name
        if enabled is not None:
            changes["enabled"] = enabled
        retry_changed = retry is not None or retry_params is not None
        if set_payload or queue is not None or max_retries is not None or retry_changed:
            if retry_params is not None:
                params: Mapping[str, Any] = retry_params
            else:  # a new strategy starts from none; an unchanged one keeps its own
                params = {} if retry is not None else current.retry_params
            checked = self.tasks.prepare(
                EnqueueSpec(
                    name=current.task_name,
                    payload=payload if set_payload else current.payload,
                    queue=queue or current.queue,
                    max_retries=current.max_retries if max_retries is None else max_retries,
                    retry=retry or current.retry,
                    retry_params=params,
                )
            )
            template.update(payload=checked.payload, queue_name=checked.queue)
            if max_retries is not None:
                template["max_retries"] = checked.max_retries
            if retry_changed:
                template.update(retry_strategy=checked.retry, retry_params=checked.retry_params)
        if not changes and not template:
            return current
        action = "schedule.update"
        if set(changes) == {"enabled"} and not template:
            action = "schedule.enable" if enabled else "schedule.disable"
        return self.store.update_schedule(
            schedule_id, changes, template_changes=template, action=action, actor=actor
        )

    def delete(self, schedule_id: uuid.UUID, *, actor: Actor | None = None) -> None:
        """Delete a schedule (the tasks it fired stay)."""
        self.store.delete_schedule(schedule_id, actor=actor)

    def preview(self, schedule_id: uuid.UUID, count: int) -> list[datetime]:
        """The next ``count`` fire times (UTC) from now."""
        record = self.store.get_schedule(schedule_id)
        return cron_schedule(record.cron, record.timezone).upcoming(self.store.now(), count)

    # --- firing ---------------------------------------------------------------------------
    def fire_due(self, *, limit: int = 50) -> FireReport:
        """Fire every slot that is due, in one transaction; after the commit, dispatch the
        tasks and emit "tasks created" and "schedule fired" (see docs/concepts/events.md)."""
        report = FireReport()
        items: list[TaskInsert] = []
        outcomes: list[Enqueued] = []
        with self.store.transaction() as conn:
            due, now = self.store.lock_due_schedules(conn, limit)
            report.schedules = len(due)
            for schedule in due:
                assert schedule.next_fire_at is not None
                plan = plan_fires(
                    cron_schedule(schedule.cron, schedule.timezone),
                    schedule.next_fire_at,
                    now,
                    policy=schedule.misfire_policy,
                    grace=self.settings.scheduler_misfire_grace,
                    cap=self.settings.scheduler_misfire_cap,
                )
                last = schedule.last_triggered_at
                for slot in plan.fire:
                    fire_id = self.store.record_fire(conn, schedule.id, slot)
                    if fire_id is None:  # another scheduler fired this slot
                        continue
                    item = _task_from_template(schedule)
                    # through the service, so before_enqueue (now) and after_enqueue (after
                    # the commit) observers see scheduled tasks like any other
                    outcomes.extend(self.tasks.enqueue_in(conn, [item]))
                    items.append(item)
                    self.store.link_fire(conn, fire_id, item.id)
                    report.fires.append(
                        ScheduleFire(
                            schedule_id=schedule.id,
                            fire_at=slot,
                            task_id=item.id,
                            task_name=item.name,
                            queue=item.queue,
                            lag=(now - slot).total_seconds(),
                        )
                    )
                    last = slot if last is None else max(last, slot)
                self.store.advance_schedule(
                    conn, schedule.id, next_fire_at=plan.next_fire_at, last_triggered_at=last
                )
        if items:
            self.tasks.enqueued(items, outcomes)
            self.tasks.events.schedule_fired(report.fires)
        return report

    def seconds_until_next_fire(self) -> float | None:
        """Seconds until the earliest enabled schedule is due (database clock), or None."""
        return self.store.seconds_until_next_fire()


def _task_from_template(schedule: ScheduleRecord) -> TaskInsert:
    return TaskInsert(
        id=uuid7(),
        run_id=uuid7(),
        name=schedule.task_name,
        queue=schedule.queue,
        payload=schedule.payload,
        max_retries=schedule.max_retries,
        retry=schedule.retry,
        retry_params=dict(schedule.retry_params),
        timeout=schedule.timeout,
        priority=schedule.priority,
        trace_id=f"schedule-{schedule.id}",
    )
