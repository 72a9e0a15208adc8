"""``/api/v1/tasks``: create (one or a batch), read, list and cancel tasks.

Every route calls :class:`~taskrt.service.TaskService` through the caller's tenant scope
(:data:`~taskrt.api.deps.Tasks`); nothing here decides anything about a
task. Field paths of the service's validation errors are prefixed with where they sit in the
request (``["body", "payload", ...]``, ``["body", "tasks", 3, "queue"]``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response, status
from starlette.concurrency import run_in_threadpool

from taskrt.api.deps import (
    AuthFirstRoute,
    CallerInfo,
    ProducerCaller,
    ReaderCaller,
    Tasks,
)
from taskrt.api.errors import LocatedValidationError, locate
from taskrt.api.openapi import CONFLICT, NOT_FOUND, PROBLEMS, role_doc
from taskrt.api.paging import Cursor, PageLimit, encode_cursor, task_cursor
from taskrt.api.schemas import (
    BatchItemOut,
    BatchOut,
    PlainText,
    RunList,
    RunOut,
    TaskBatchCreate,
    TaskCreate,
    TaskOut,
    TaskPage,
    json_problems,
)
from taskrt.api.task_search import TaskSearchQuery
from taskrt.auth import Role
from taskrt.exceptions import BatchValidationError, UnknownTaskError, ValidationError
from taskrt.service import EnqueueSpec, TenantTasks

router = APIRouter(
    prefix="/api/v1/tasks", tags=["tasks"], responses=PROBLEMS, route_class=AuthFirstRoute
)

IdempotencyKey = Annotated[
    PlainText | None,
    Header(
        alias="Idempotency-Key",
        description="Dedup key for this task (same as `dedup_key` in the body).",
    ),
]


def _spec(body: TaskCreate, trace_id: str | None, loc: tuple[str | int, ...]) -> EnqueueSpec:
    problems = json_problems(body.payload, (*loc, "payload"))
    problems += json_problems(body.retry_params, (*loc, "retry_params"))
    if problems:
        raise LocatedValidationError("the task cannot be stored: " + problems[0]["msg"], problems)
    return EnqueueSpec(
        name=body.name,
        payload=body.payload,
        queue=body.queue,
        delay=body.delay,
        run_at=body.run_at,
        dedup_key=body.dedup_key,
        max_retries=body.max_retries,
        retry=body.retry,
        retry_params=body.retry_params,
        timeout=body.timeout,
        priority=body.priority,
        trace_id=trace_id,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    summary="Create a task",
    response_description="The task was created.",
    responses={200: {"model": TaskOut, "description": "A live task held the dedup key."}},
    openapi_extra=role_doc(Role.PRODUCER),
)
async def create_task(
    body: TaskCreate,
    caller: ProducerCaller,
    tasks: Tasks,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TaskOut:
    """Create a task: 201 with the new task, or 200 with the live task that holds its dedup key
    (from `dedup_key` or the `Idempotency-Key` header)."""
    # the hottest route: one thread-pool hop for the whole of its blocking work, where a sync
    # route costs two (the call, then FastAPI's validation of what it returned)
    return await run_in_threadpool(_create_task, body, caller, tasks, response, idempotency_key)


def _create_task(
    body: TaskCreate,
    caller: CallerInfo,
    tasks: TenantTasks,
    response: Response,
    idempotency_key: str | None,
) -> TaskOut:
    if idempotency_key is not None:
        if body.dedup_key not in (None, idempotency_key):
            raise LocatedValidationError(
                "Idempotency-Key and dedup_key differ; send one of them",
                [{"loc": ["header", "Idempotency-Key"], "msg": "differs from body.dedup_key"}],
            )
        body = body.model_copy(update={"dedup_key": idempotency_key})
    spec = _spec(body, caller.request_id, ("body",))
    try:
        result = tasks.enqueue(spec, actor=caller.actor)
    except ValidationError as exc:
        raise locate(exc, "body") from None
    if not result.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/tasks/{result.id}"
    return TaskOut.of(tasks.get(result.id))


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchOut,
    summary="Create up to 1,000 tasks at once",
    response_description="At least one task was created.",
    responses={200: {"model": BatchOut, "description": "Every task was a dedup hit."}},
    openapi_extra=role_doc(Role.PRODUCER),
)
def create_tasks(
    body: TaskBatchCreate, caller: ProducerCaller, tasks: Tasks, response: Response
) -> BatchOut:
    """Create tasks in one transaction, all or nothing: 422 lists every invalid item with its
    index (`["body", "tasks", 3, "payload"]`) and stores none. 201 if any task was created, 200
    if every one was a dedup hit."""
    problems: list[dict[str, Any]] = []
    numbered: list[tuple[int, EnqueueSpec]] = []
    for index, item in enumerate(body.tasks):
        try:
            numbered.append((index, _spec(item, caller.request_id, ("body", "tasks", index))))
        except ValidationError as exc:
            problems += exc.errors
    if problems:
        # JSON no store could hold: the batch is refused here, and the service names what else
        # is wrong with the other items (its locs count among those items only)
        try:
            tasks.prepare_many([spec for _, spec in numbered])
        except BatchValidationError as exc:
            problems += [
                {**e, "loc": ["body", "tasks", numbered[e["loc"][0]][0], *e["loc"][1:]]}
                for e in exc.errors
            ]
        raise _batch_refused(problems)
    specs = [spec for _, spec in numbered]
    try:
        results = tasks.enqueue_many(specs, actor=caller.actor)
    except ValidationError as exc:
        # the service numbers the items itself, except in a batch of one
        located = (
            locate(exc, "body", "tasks", 0) if len(specs) == 1 else locate(exc, "body", "tasks")
        )
        items = exc.items if isinstance(exc, BatchValidationError) else [(0, exc)]
        if any(isinstance(error, UnknownTaskError) for _, error in items):
            raise _batch_refused(located.errors) from None
        raise located from None
    if not any(r.created for r in results):
        response.status_code = status.HTTP_200_OK
    return BatchOut(
        items=[
            BatchItemOut(id=r.id, created=r.created, name=r.name, queue=r.queue) for r in results
        ]
    )


def _batch_refused(problems: list[dict[str, Any]]) -> LocatedValidationError:
    """The answer to a batch with unstorable JSON or an unknown task name: every problem,
    counted (a shorter message than the service's, which lists them in its text too)."""
    return LocatedValidationError(
        f"{len(problems)} problem(s) in the batch, nothing stored", problems
    )


@router.get(
    "",
    response_model=TaskPage,
    summary="List and search tasks",
    openapi_extra=role_doc(Role.READER),
)
def list_tasks(
    caller: ReaderCaller,
    tasks: Tasks,
    search: TaskSearchQuery,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    """Tasks newest first, each with its latest run, filtered by status, queue, type, created
    and finished time, the error type of the last failed run, dedup key and payload values
    (every filter given must hold; each is served by an index, see docs/how-to/search.md).
    Schedule templates are left out unless `kind` asks for them. Pages are keyset-paginated:
    pass the `next_cursor` of a page as `cursor`, with the same filters, for the next one."""
    before = task_cursor(cursor) if cursor else None
    found = tasks.list_tasks(search, limit=limit + 1, before=before)
    page, more = found[:limit], len(found) > limit
    latest = tasks.latest_runs([t.id for t in page])
    return TaskPage(
        items=[TaskOut.of(t, latest.get(t.id)) for t in page],
        next_cursor=encode_cursor("t", str(page[-1].id)) if more and page else None,
    )


@router.get(
    "/{task_id}",
    response_model=TaskOut,
    summary="Get a task with its latest run",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.READER),
)
def get_task(task_id: uuid.UUID, caller: ReaderCaller, tasks: Tasks) -> TaskOut:
    """The task and its latest run."""
    return TaskOut.of(tasks.get(task_id))


@router.get(
    "/{task_id}/runs",
    response_model=RunList,
    summary="Every run of a task",
    responses=NOT_FOUND,
    openapi_extra=role_doc(Role.READER),
)
def get_runs(task_id: uuid.UUID, caller: ReaderCaller, tasks: Tasks) -> RunList:
    """Every attempt of the task, oldest first."""
    return RunList(items=[RunOut.of(r) for r in tasks.get(task_id).runs])


@router.post(
    "/{task_id}/cancel",
    response_model=TaskOut,
    summary="Cancel a task",
    responses={**NOT_FOUND, **CONFLICT},
    openapi_extra=role_doc(Role.PRODUCER),
)
def cancel_task(task_id: uuid.UUID, caller: ProducerCaller, tasks: Tasks) -> TaskOut:
    """Cancel a task: a queued one never runs, a running one is asked to stop (its status
    changes when its worker honours the request). 409 if it already finished."""
    return TaskOut.of(tasks.cancel(task_id, actor=caller.actor))


@router.post(
    "/{task_id}/retry",
    response_model=TaskOut,
    summary="Run a finished task again",
    responses={**NOT_FOUND, **CONFLICT},
    openapi_extra=role_doc(Role.PRODUCER),
)
def retry_task(task_id: uuid.UUID, caller: ProducerCaller, tasks: Tasks) -> TaskOut:
    """Give a finished task (completed, failed or cancelled) a new run with a fresh retry
    budget; audited as ``task.retry``. 409 while the task is still queued, running or waiting
    for a retry."""
    return TaskOut.of(tasks.rerun(task_id, actor=caller.actor))
