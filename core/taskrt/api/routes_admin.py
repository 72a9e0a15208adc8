"""Workers, the audit log, pruning the history, and the health probes."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from taskrt.api.deps import AdminCaller, AuthFirstRoute, ReaderCaller, State, Tasks, state_of
from taskrt.api.errors import ProblemResponse, problem_response
from taskrt.api.openapi import PROBLEMS, problems, role_doc
from taskrt.api.paging import Cursor, PageLimit, audit_cursor, encode_cursor
from taskrt.api.prune_schemas import PruneCountsOut, PruneIn, PruneOut
from taskrt.api.request_ids import request_id_of
from taskrt.api.schemas import (
    AuditOut,
    AuditPage,
    Health,
    PlainText,
    Readiness,
    WorkerList,
    WorkerOut,
)
from taskrt.auth import Role

log = logging.getLogger("taskrt.api")

router = APIRouter(prefix="/api/v1", tags=["admin"], responses=PROBLEMS, route_class=AuthFirstRoute)
probes = APIRouter(tags=["health"])


@router.get(
    "/workers",
    response_model=WorkerList,
    summary="List workers",
    openapi_extra=role_doc(Role.READER),
)
def list_workers(
    caller: ReaderCaller,
    tasks: Tasks,
    include_offline: Annotated[bool, Query(description="Include offline workers.")] = True,
) -> WorkerList:
    """Registered workers with their queues, concurrency and last heartbeat, newest first:
    those serving the caller's tenant (an operator that names no tenant sees every worker)."""
    workers = tasks.workers(include_offline=include_offline, all_tenants=caller.every_tenant)
    return WorkerList(items=[WorkerOut.of(w) for w in workers])


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="Read the audit log",
    openapi_extra=role_doc(Role.ADMIN),
)
def list_audit(
    caller: AdminCaller,
    tasks: Tasks,
    action: Annotated[PlainText | None, Query(description="e.g. `task.create`.")] = None,
    actor: Annotated[PlainText | None, Query(description="e.g. `apikey:ci`.")] = None,
    target_id: Annotated[PlainText | None, Query(description="A task id, queue name, ...")] = None,
    limit: PageLimit = 100,
    cursor: Cursor = None,
) -> AuditPage:
    """Who changed what in the caller's tenant, newest first, filtered by action, actor and
    target; keyset-paginated like the task list. An operator that names no tenant reads every
    tenant's rows."""
    before = audit_cursor(cursor) if cursor else None
    rows = tasks.audit(
        action=action,
        actor=actor,
        target_id=target_id,
        limit=limit + 1,
        before_id=before,
        all_tenants=caller.every_tenant,
    )
    page, more = rows[:limit], len(rows) > limit
    return AuditPage(
        items=[AuditOut.of(r) for r in page],
        next_cursor=encode_cursor("a", str(page[-1].id)) if more and page else None,
    )


@probes.get("/healthz", response_model=Health, summary="Liveness probe")
async def healthz() -> Health:
    """The process answers; touches nothing else (so it runs on the event loop, and answers
    even while every thread of the pool is busy)."""
    return Health()


@probes.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness probe",
    responses=problems(503),
)
def readyz(request: Request) -> Readiness | ProblemResponse:
    """The database and Redis answer (Redis only when one is configured)."""
    state = state_of(request)
    checks: dict[str, str] = {}
    failed: list[dict[str, Any]] = []
    try:
        state.store.ping()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness: the database did not answer: %s", exc)
        failed.append({"loc": ["database"], "msg": "did not answer"})
    if state.settings.redis_url:
        try:
            state.limiter.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # as above
            log.warning("readiness: Redis did not answer: %s", exc)
            failed.append({"loc": ["redis"], "msg": "did not answer"})
    else:
        checks["redis"] = "not configured"
    if failed:
        names = ", ".join(str(f["loc"][0]) for f in failed)
        return problem_response(
            503,
            f"not ready: {names} did not answer",
            request_id=request_id_of(request.scope),
            errors=failed,
        )
    return Readiness(checks=checks)


@router.post(
    "/admin/prune",
    response_model=PruneOut,
    summary="Prune the history",
    openapi_extra=role_doc(Role.ADMIN),
)
def prune_history(body: PruneIn, caller: AdminCaller, state: State) -> PruneOut:
    """Delete finished tasks (with their runs), audit rows and schedule fires older than
    their retention (or than `older_than`), like `taskrt prune`; audited as `history.prune`.
    Audit rows and schedule fires are left alone when `status`, `queue` or `type` narrows the
    tasks. One request deletes at most `limit` rows per table and says with `more` whether
    rows are still due (docs/how-to/retention.md). A tenant's admin prunes only its tenant's
    tasks and audit rows (schedule fires are left to automatic retention); an operator that
    names no tenant prunes every tenant."""
    from taskrt.prune import FINISHED_STATUSES, Pruner, PruneRequest, parse_older_than

    request = PruneRequest(
        older_than=None if body.older_than is None else parse_older_than(body.older_than),
        statuses=tuple(body.status) if body.status else FINISHED_STATUSES,
        queue=body.queue,
        task_type=body.type,
        dry_run=body.dry_run,
        limit=body.limit,
        tenant=None if caller.every_tenant else caller.tenant,
    )
    counts = Pruner(state.store, state.settings).run(request, actor=caller.actor)
    return PruneOut(
        dry_run=body.dry_run, deleted=PruneCountsOut(**counts.to_dict()), more=counts.more
    )
