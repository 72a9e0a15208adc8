"""The query parameters of ``GET /api/v1/tasks``, read into a
:class:`~taskrt.store.search.TaskSearch` (docs/how-to/search.md).

Payload equality is written ``payload=PATH:VALUE`` and may be repeated (every one must hold):
``payload=customer_id:42`` matches the number 42, ``payload=customer_id:"42"`` the string,
``payload=region.code:eu`` a nested key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import AwareDatetime, StringConstraints

from taskrt.api.errors import locate
from taskrt.api.schemas import PlainText, QueueName, TaskName
from taskrt.exceptions import ValidationError
from taskrt.records import TaskStatus
from taskrt.store.search import MAX_PAYLOAD_MATCHES, PayloadMatch, TaskSearch

PayloadFilter = Annotated[str, StringConstraints(min_length=3, max_length=600)]


def task_search(
    task_status: Annotated[
        TaskStatus | None, Query(alias="status", description="Only tasks in this status.")
    ] = None,
    queue: Annotated[QueueName | None, Query(description="Only tasks of this queue.")] = None,
    name: Annotated[TaskName | None, Query(description="Only tasks of this type.")] = None,
    kind: Annotated[
        Literal["immediate", "scheduled", "all"],
        Query(
            description="`immediate` (the default): tasks to run; `scheduled`: the task "
            "templates cron schedules fire; `all`: both."
        ),
    ] = "immediate",
    created_after: Annotated[
        AwareDatetime | None,
        Query(
            description="Only tasks created at or after this time (the millisecond in the "
            "task's id, a UUIDv7 made when the task was enqueued)."
        ),
    ] = None,
    created_before: Annotated[
        AwareDatetime | None, Query(description="Only tasks created before this time.")
    ] = None,
    finished_after: Annotated[
        AwareDatetime | None, Query(description="Only tasks finished at or after this time.")
    ] = None,
    finished_before: Annotated[
        AwareDatetime | None, Query(description="Only tasks finished before this time.")
    ] = None,
    error_type: Annotated[
        PlainText | None,
        Query(
            description="Only tasks whose last failed (or lost) run raised this error type, "
            "as shown in a run's `error_type` (`ValueError`, `myapp.errors.SmtpError`)."
        ),
    ] = None,
    dedup_key: Annotated[
        PlainText | None, Query(description="Only tasks with this dedup key.")
    ] = None,
    payload: Annotated[
        list[PayloadFilter] | None,
        Query(
            max_length=MAX_PAYLOAD_MATCHES,
            description="`PATH:VALUE`, repeatable: only tasks whose JSON payload holds VALUE "
            "at the dot-separated key PATH (`customer_id:42`, `region.code:eu`). VALUE is read "
            'as JSON when it is a JSON string, number, boolean or null (`"42"` is the string), '
            "else taken as a string.",
        ),
    ] = None,
) -> TaskSearch:
    """The search the query parameters ask for; 422 naming the parameter when one is bad."""
    try:
        matches = tuple(
            PayloadMatch.parse(text, sep=":", option="payload") for text in payload or ()
        )
    except ValidationError as exc:
        raise locate(exc, "query") from None
    return TaskSearch(
        status=task_status.value if task_status else None,
        queue=queue,
        name=name,
        kind=None if kind == "all" else kind,
        created_after=created_after,
        created_before=created_before,
        finished_after=finished_after,
        finished_before=finished_before,
        error_type=error_type,
        dedup_key=dedup_key,
        payload=matches,
    )


TaskSearchQuery = Annotated[TaskSearch, Depends(task_search)]
"""A route parameter holding the search of ``GET /api/v1/tasks``."""
