"""``/api/v1/schedules``: create, read, list, change and delete cron schedules, their recent
fires, and a preview of their next fire times.

Every route calls :class:`~taskrt.schedule_service.ScheduleService`, the same one the CLI and
the scheduler use; nothing here decides anything about a schedule. The service's field paths are
prefixed with ``body`` (``["body", "cron"]``), and the task type it calls ``name`` is ``task``
here, as in the request.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response, status

from taskrt.api.deps import AdminCaller, AuthFirstRoute, ReaderCaller, Schedules
from taskrt.api.errors import LocatedValidationError, locate
from taskrt.api.openapi import NOT_FOUND, PROBLEMS, role_doc
from taskrt.api.paging import Cursor, PageLimit, encode_cursor, schedule_cursor
from taskrt.api.schedule_schemas import (
    FireList,
    FireOut,
    FireTime,
    ScheduleCreate,
    ScheduleOut,
    SchedulePage,
    SchedulePreview,
    ScheduleUpdate,
)
from taskrt.api.schemas import json_problems
from taskrt.auth import Role
from taskrt.exceptions import UnknownTaskError, ValidationError

router = APIRouter(
    prefix="/api/v1/schedules", tags=["schedules"], responses=PROBLEMS, route_class=AuthFirstRoute
)

MAX_PREVIEW = 100
MAX_FIRES = 500


def _located(exc: ValidationError) -> LocatedValidationError:
    errors = exc.errors
    if isinstance(exc, UnknownTaskError):  # the registry names the field `name`
        errors = [{**e, "loc": ["task", *e.get("loc", ())[1:]]} for e in errors]
    return locate(ValidationError(str(exc), errors), "body")


def _check_storable(**values: Any) -> None:
    problems: list[dict[str, Any]] = []
    for field, value in values.items():
        problems += json_problems(value, ("body", field))
    if problems:
        raise LocatedValidationError(
            "the schedule cannot be stored: " + problems[0]["msg"], problems
        )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    summary="Create a schedule",
    response_description="The schedule was created; `Location` names it.",
    openapi_extra=role_doc(Role.ADMIN),
)
def create_schedule(
    body: ScheduleCreate, caller: AdminCaller, schedules: Schedules, response: Response
) -> ScheduleOut:
    """Create a schedule. An invalid cron expression, an unknown time zone or a payload the task
    type refuses is a 422 naming the field (`["body", "cron"]`), and nothing is stored."""
    _check_storable(payload=body.payload, retry_params=body.retry_params)
    try:
        schedule = schedules.create(
            cron=body.cron,
            timezone=body.timezone,
            task=body.task,
            payload=body.payload,
            queue=body.queue,
            misfire_policy=body.misfire_policy,
            name=body.name,
            enabled=body.enabled,
            max_retries=body.max_retries,
            retry=body.retry,
            retry_params=body.retry_params,
            timeout=body.timeout,
            priority=body.priority,
            actor=caller.actor,
        )
    except ValidationError as exc:
        raise _located(exc) from None
    response.headers["Location"] = f"/api/v1/schedules/{schedule.id}"
    return ScheduleOut.of(schedule)


@router.get(
    "",
    response_model=SchedulePage,
    summary="List schedules",
    openapi_extra=role_doc(Role.READER),
)
def list_schedules(
    caller: ReaderCaller, schedules: Schedules, limit: PageLimit = 50, cursor: Cursor = None
) -> SchedulePage:
    """Schedules oldest first, keyset-paginated: pass the `next_cursor` of a page as `cursor`
    for the next one."""
    after = schedule_cursor(cursor) if cursor else None
    found = schedules.list_schedules(limit=limit + 1, after=after)
    page, more = found[:limit], len(found) > limit
    return SchedulePage(
        items=[ScheduleOut.of(s) for s in page],
        next_cursor=encode_cursor("s", str(page[-1].id)) if more and page else None,
    )


@router.get(
    "/{schedule_id}",
    response_model=ScheduleOut,
    summary="Get a schedule",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.READER),
)
def get_schedule(schedule_id: uuid.UUID, caller: ReaderCaller, schedules: Schedules) -> ScheduleOut:
    """The schedule with its task template, last fire and next fire time."""
    return ScheduleOut.of(schedules.get(schedule_id))


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleOut,
    summary="Change a schedule",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.ADMIN),
)
def update_schedule(
    schedule_id: uuid.UUID, body: ScheduleUpdate, caller: AdminCaller, schedules: Schedules
) -> ScheduleOut:
    """Change the fields given (at least one); the schedulers see the change at their next tick.
    `{"enabled": false}` and `{"enabled": true}` are recorded as `schedule.disable` and
    `schedule.enable` in the audit log, anything else as `schedule.update`."""
    changes = body.changes()
    if "payload" in changes:
        _check_storable(payload=changes["payload"])
    try:
        schedule = schedules.update(schedule_id, **changes, actor=caller.actor)
    except ValidationError as exc:
        raise _located(exc) from None
    return ScheduleOut.of(schedule)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a schedule",
    response_description="The schedule is gone.",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.ADMIN),
)
def delete_schedule(schedule_id: uuid.UUID, caller: AdminCaller, schedules: Schedules) -> Response:
    """Delete the schedule and its fire history; the tasks it fired stay."""
    schedules.delete(schedule_id, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{schedule_id}/fires",
    response_model=FireList,
    summary="Recent fires of a schedule",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.READER),
)
def list_fires(
    schedule_id: uuid.UUID,
    caller: ReaderCaller,
    schedules: Schedules,
    limit: Annotated[int, Query(ge=1, le=MAX_FIRES, description="Most fires to return.")] = 50,
) -> FireList:
    """The schedule's latest fires, newest first: each slot, the task it created and the lag
    from the slot to the fire."""
    return FireList(items=[FireOut.of(f) for f in schedules.fires(schedule_id, limit=limit)])


@router.get(
    "/{schedule_id}/next",
    response_model=SchedulePreview,
    summary="Preview a schedule's next fire times",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.READER),
)
def preview_schedule(
    schedule_id: uuid.UUID,
    caller: ReaderCaller,
    schedules: Schedules,
    count: Annotated[
        int, Query(ge=1, le=MAX_PREVIEW, description="How many fire times to compute.")
    ] = 5,
) -> SchedulePreview:
    """The next `count` fire times from now, in the schedule's time zone and in UTC, under the
    daylight-saving rules of the scheduler (a skipped local time fires once after the gap, a
    repeated one once)."""
    schedule = schedules.get(schedule_id)
    zone = ZoneInfo(schedule.timezone)
    times = schedules.preview(schedule_id, count)
    return SchedulePreview(
        schedule_id=schedule.id,
        cron=schedule.cron,
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        items=[FireTime(local=t.astimezone(zone), utc=t) for t in times],
    )
