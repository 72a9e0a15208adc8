"""``/api/v1/queues``: queue sizes, pause and resume, and the dead-letter queues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from taskrt.api.deps import AdminCaller, AuthFirstRoute, ReaderCaller, Tasks
from taskrt.api.errors import LocatedValidationError
from taskrt.api.openapi import PROBLEMS, role_doc
from taskrt.api.paging import Cursor, PageLimit, encode_cursor, task_cursor
from taskrt.api.schemas import (
    QueueList,
    QueueOut,
    QueueStateOut,
    ReplayOut,
    ReplayRequest,
    TaskOut,
    TaskPage,
)
from taskrt.auth import Role

router = APIRouter(
    prefix="/api/v1/queues", tags=["queues"], responses=PROBLEMS, route_class=AuthFirstRoute
)

QueuePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="The queue's name.")]


@router.get(
    "", response_model=QueueList, summary="List queues", openapi_extra=role_doc(Role.READER)
)
def list_queues(caller: ReaderCaller, tasks: Tasks) -> QueueList:
    """Ready, delayed, in-flight and dead-letter counts and the paused state of every queue
    of the caller's tenant (queue names are per tenant)."""
    return QueueList(
        items=[
            QueueOut(
                name=c.name,
                ready=c.ready,
                delayed=c.delayed,
                inflight=c.inflight,
                dlq=c.dlq,
                paused=c.paused,
            )
            for c in tasks.queues()
        ]
    )


@router.post(
    "/{name}/pause",
    response_model=QueueStateOut,
    summary="Pause a queue",
    openapi_extra=role_doc(Role.ADMIN),
)
def pause_queue(name: QueuePath, caller: AdminCaller, tasks: Tasks) -> QueueStateOut:
    """Stop workers fetching from the queue; running tasks go on."""
    tasks.pause(name, actor=caller.actor)
    return QueueStateOut(name=name, paused=True)


@router.post(
    "/{name}/resume",
    response_model=QueueStateOut,
    summary="Resume a queue",
    openapi_extra=role_doc(Role.ADMIN),
)
def resume_queue(name: QueuePath, caller: AdminCaller, tasks: Tasks) -> QueueStateOut:
    """Let workers fetch from the queue again."""
    tasks.resume(name, actor=caller.actor)
    return QueueStateOut(name=name, paused=False)


@router.get(
    "/{name}/dlq",
    response_model=TaskPage,
    summary="List a queue's dead letters",
    openapi_extra=role_doc(Role.READER),
)
def list_dead_letters(
    name: QueuePath,
    caller: ReaderCaller,
    tasks: Tasks,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    """Dead-lettered tasks of the queue, newest first, each with its last run (and error)."""
    found = tasks.dead_letters(
        name, limit=limit + 1, before=task_cursor(cursor) if cursor else None
    )
    page, more = found[:limit], len(found) > limit
    return TaskPage(
        items=[TaskOut.of(t) for t in page],
        next_cursor=encode_cursor("t", str(page[-1].id)) if more and page else None,
    )


@router.post(
    "/{name}/dlq/replay",
    response_model=ReplayOut,
    summary="Replay dead letters",
    openapi_extra=role_doc(Role.ADMIN),
)
def replay_dead_letters(
    name: QueuePath, body: ReplayRequest, caller: AdminCaller, tasks: Tasks
) -> ReplayOut:
    """Give dead-lettered tasks of the queue a new run and a fresh retry budget: the listed
    `task_ids`, or every one with `{"all": true}`. Tasks that are not dead-lettered in this
    queue are returned as `skipped`."""
    if (body.task_ids is None) == (body.all is None):
        raise LocatedValidationError(
            "give task_ids or all: true (one of them)",
            [{"loc": ["body"], "msg": "give exactly one of task_ids and all"}],
        )
    result = tasks.replay(name, body.task_ids, replay_all=body.all is True, actor=caller.actor)
    return ReplayOut(replayed=result.replayed, skipped=result.skipped)
