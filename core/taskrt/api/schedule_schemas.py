"""Request and response bodies of the schedule routes (``/api/v1/schedules``).

The task a schedule fires takes the same options, with the same bounds, as a task created
directly: the annotated types come from :mod:`taskrt.api.schemas`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from taskrt.api.schemas import (
    AttemptTimeout,
    MaxRetries,
    PlainText,
    PriorityNumber,
    QueueName,
    RetryCount,
    RetryName,
    RetryParams,
    StrategyName,
    TaskName,
)
from taskrt.records import FireRecord, ScheduleRecord

CronText = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
ZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
MisfirePolicy = Literal["skip", "coalesce", "all"]

_CRON_DOC = (
    "Five fields (`minute hour day-of-month month day-of-week`), or six with seconds first "
    "(`*/10 * * * * *`)."
)
_MISFIRE_DOC = (
    "Slots missed while no scheduler ran: `skip` fires none, `coalesce` one for all of them, "
    "`all` each (up to `TASKRT_SCHEDULER_MISFIRE_CAP`)."
)


def _optional(description: str) -> Any:
    """A field that may be left out: no default in the JSON schema, and None when absent."""

    def drop_default(schema: dict[str, Any]) -> None:
        schema.pop("default", None)

    return Field(default=None, description=description, json_schema_extra=drop_default)


class ScheduleCreate(BaseModel):
    """A cron schedule: when (``cron`` read in ``timezone``) and the task it fires. Anything of
    the task left out comes from the task type's defaults, as for a task created directly."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"cron": "*/5 * * * *", "task": "example.echo", "payload": {"hello": "world"}},
                {
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Berlin",
                    "task": "example.word_count",
                    "payload": {"text": "nightly report"},
                    "queue": "normal",
                    "misfire_policy": "skip",
                    "name": "nightly",
                },
            ]
        },
    )

    cron: CronText = Field(description=_CRON_DOC)
    timezone: ZoneName = Field(
        default="UTC", description="IANA time zone the expression is read in (`Europe/Berlin`)."
    )
    task: TaskName = Field(description="The task type to fire (`example.echo`).")
    payload: Any = Field(default=None, description="JSON payload, validated by the task type.")
    queue: QueueName | None = Field(default=None, description="Queue of the tasks it fires.")
    misfire_policy: MisfirePolicy = Field(default="coalesce", description=_MISFIRE_DOC)
    name: PlainText | None = Field(default=None, description="A label for listings.")
    enabled: bool = Field(default=True, description="False creates it disabled.")
    max_retries: MaxRetries = None
    retry: RetryName = None
    retry_params: RetryParams = None
    timeout: AttemptTimeout = None
    priority: PriorityNumber | None = Field(
        default=None, description="Priority number stored with each task."
    )


class ScheduleUpdate(BaseModel):
    """What to change; fields left out stay as they are. A new ``cron`` or ``timezone`` takes
    effect from now; ``enabled: true`` keeps the stored next fire time, so slots missed while
    the schedule was disabled follow its misfire policy. ``payload``, ``queue`` and the retry
    settings are checked against the task type as at creation; tasks already fired keep
    theirs."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"enabled": False},
                {"cron": "0 * * * *", "timezone": "America/New_York"},
                {"payload": {"text": "weekly report"}, "misfire_policy": "all"},
            ],
            "minProperties": 1,
        },
    )

    # Each field may be left out, but null is no value for it (except for `payload`): the
    # annotations say what a given value must be, and the `None` defaults only mean "left out"
    # (`changes()` passes on what was given, never a default).
    cron: CronText = _optional(_CRON_DOC)
    timezone: ZoneName = _optional("IANA time zone the expression is read in.")
    enabled: bool = _optional("Turn the schedule on or off.")
    misfire_policy: MisfirePolicy = _optional(_MISFIRE_DOC)
    name: PlainText = _optional("A new label.")
    payload: Any = _optional("A new payload (`null` included), checked by the task type.")
    queue: QueueName = _optional("A new queue for the tasks it fires.")
    max_retries: RetryCount = _optional(
        "Retries after the first attempt, for the tasks it fires from now on."
    )
    retry: StrategyName = _optional(
        "A new retry strategy; without `retry_params` it starts from no parameters."
    )
    retry_params: dict[str, Any] = _optional(
        "New parameters of the retry strategy (the current strategy unless `retry` is given)."
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> ScheduleUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields given, as keyword arguments of ``ScheduleService.update``."""
        given = self.model_dump(exclude_unset=True)
        if "payload" in given:
            given["set_payload"] = True
        return given


class ScheduleOut(BaseModel):
    """A schedule and the task it fires."""

    id: uuid.UUID
    name: str | None = None
    cron: str
    timezone: str
    enabled: bool
    misfire_policy: MisfirePolicy
    task: str = Field(description="The task type it fires.")
    payload: Any = None
    queue: str
    max_retries: int
    retry: str
    retry_params: dict[str, Any]
    timeout: float | None = None
    priority: int
    created_at: datetime
    updated_at: datetime
    last_triggered_at: datetime | None = Field(
        default=None, description="The latest slot it fired."
    )
    next_fire_at: datetime | None = Field(default=None, description="The next slot due (UTC).")

    @classmethod
    def of(cls, schedule: ScheduleRecord) -> ScheduleOut:
        """The response form of ``schedule``."""
        return cls(
            id=schedule.id,
            name=schedule.name,
            cron=schedule.cron,
            timezone=schedule.timezone,
            enabled=schedule.enabled,
            misfire_policy=cast(MisfirePolicy, schedule.misfire_policy),
            task=schedule.task_name,
            payload=schedule.payload,
            queue=schedule.queue,
            max_retries=schedule.max_retries,
            retry=schedule.retry,
            retry_params=schedule.retry_params,
            timeout=schedule.timeout,
            priority=schedule.priority,
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
            last_triggered_at=schedule.last_triggered_at,
            next_fire_at=schedule.next_fire_at,
        )


class SchedulePage(BaseModel):
    """One page of schedules, oldest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[ScheduleOut]
    next_cursor: str | None = None


class FireOut(BaseModel):
    """One fired slot of a schedule and the task it created."""

    id: int
    fire_at: datetime = Field(description="The slot (UTC).")
    task_id: uuid.UUID | None = Field(default=None, description="The task the fire created.")
    created_at: datetime = Field(description="When the fire was recorded.")
    lag_seconds: float = Field(description="Seconds from the slot to the fire (database clock).")

    @classmethod
    def of(cls, fire: FireRecord) -> FireOut:
        """The response form of ``fire``."""
        return cls(
            id=fire.id,
            fire_at=fire.fire_at,
            task_id=fire.task_id,
            created_at=fire.created_at,
            lag_seconds=fire.lag,
        )


class FireList(BaseModel):
    """Recent fires of a schedule, newest first."""

    items: list[FireOut]


class FireTime(BaseModel):
    """One upcoming fire time, on the schedule's wall clock and in UTC."""

    local: datetime = Field(description="In the schedule's time zone, with its UTC offset.")
    utc: datetime


class SchedulePreview(BaseModel):
    """The next fire times of a schedule from now (whether or not it is enabled)."""

    schedule_id: uuid.UUID
    cron: str
    timezone: str
    enabled: bool
    items: list[FireTime]
