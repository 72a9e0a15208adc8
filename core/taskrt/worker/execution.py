"""Running one claimed run: payload, context, handler, timeout, cancellation, outcome.

``def`` handlers run entirely on a pool thread (:class:`~taskrt.worker.threads.HandlerThreads`):
the thread builds the context, calls the handler and reports the outcome, so a sync run costs
no trip through the event loop. ``async def`` handlers run on the worker's event loop. The loop
also enforces sync handlers' timeouts (a timer per run that has one).

Every run is *settled* exactly once — by its handler finishing, by its timeout, or by being
handed back at shutdown — and only then frees its slot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from taskrt import logs
from taskrt.context import TaskContext
from taskrt.exceptions import NonRetryableError, TaskCancelled, UnknownTaskError
from taskrt.handlers import TaskType
from taskrt.outcomes import OutcomeBuilder
from taskrt.plugins import Observers, Registry
from taskrt.queue.base import ClaimedRun, RunFinish
from taskrt.records import ExecutionOutcome, RunStatus
from taskrt.worker.threads import HandlerThreads

log = logging.getLogger("taskrt.worker")


@dataclass(eq=False)
class ActiveRun:
    """A run this worker holds, from claim until its outcome is written or it is handed back."""

    run: ClaimedRun
    ctx: TaskContext | None = None
    handler_task: asyncio.Future[Any] | None = None
    timer: asyncio.TimerHandle | None = None
    started: bool = False
    fetched_monotonic: float = field(default_factory=time.monotonic)
    started_monotonic: float | None = None
    ran_seconds: float | None = None
    """How long its handler ran (set when it settles; the duration metric)."""
    settled: bool = False
    handed_back: bool = False
    lease_lost: bool = False
    cancel_requested: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request_cancel(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ask the handler to stop: flag it, set the context's event, cancel an async handler."""
        self.cancel_requested = True
        if self.ctx is not None:
            self.ctx.request_cancel()
        handler = self.handler_task
        if handler is not None:
            loop.call_soon_threadsafe(handler.cancel)

    def hand_back(self) -> bool:
        """Mark the run handed back unless it already settled; True if it was marked."""
        with self.lock:
            if self.settled or self.handed_back:
                return False
            self.handed_back = True
            return True


class RunExecutor:
    """Starts runs and reports each one's finish to ``on_finish`` and its end to ``on_done``."""

    def __init__(
        self,
        *,
        registry: Registry,
        observers: Observers,
        outcomes: OutcomeBuilder,
        threads: HandlerThreads,
        loop: asyncio.AbstractEventLoop,
        worker_id: Any,
        on_finish: Callable[[ActiveRun, RunFinish], None],
        on_done: Callable[[ActiveRun], None],
    ) -> None:
        self.registry = registry
        self.observers = observers
        self.outcomes = outcomes
        self.threads = threads
        self.loop = loop
        self.worker_id = worker_id
        self.on_finish = on_finish
        self.on_done = on_done

    # --- starting -------------------------------------------------------------------------
    def start(self, active: ActiveRun) -> None:
        """Start ``active`` (from any thread; never blocks)."""
        active.started = True
        run = active.run
        try:
            task_type = self.registry.task_type(run.name)
        except UnknownTaskError as exc:
            log.error(
                "run %s: task type %r is not installed on this worker",
                run.run_id,
                run.name,
                extra=logs.run_fields(run, self.worker_id),
            )
            self.settle(active, self.outcomes.failed(run, exc, reason="unknown_task"))
            return
        if task_type.is_async:
            self.loop.call_soon_threadsafe(self._spawn_async, active, task_type)
            return
        if run.timeout is not None:
            self.loop.call_soon_threadsafe(self._arm_timeout, active, run.timeout)
        self.threads.run(self._run_sync, active, task_type)

    def settle(self, active: ActiveRun, finish: RunFinish | None) -> None:
        """Record the end of ``active`` once: report ``finish`` (unless handed back), free
        its slot. Later calls (a thread outliving its timeout) do nothing."""
        with active.lock:
            if active.settled:
                return
            active.settled = True
            report = finish is not None and not active.handed_back
        if active.timer is not None:
            self.loop.call_soon_threadsafe(active.timer.cancel)
        if report:
            # even when the heartbeat saw the lease taken over, the outcome goes to the
            # store: its fenced UPDATE is what decides, and rejects it
            assert finish is not None
            if active.started_monotonic is not None:
                finish.start_delay = active.started_monotonic - active.fetched_monotonic
                active.ran_seconds = time.monotonic() - active.started_monotonic
            self.on_finish(active, finish)
        self.on_done(active)

    # --- shared steps ---------------------------------------------------------------------
    def _prepare(
        self, active: ActiveRun, task_type: TaskType[Any]
    ) -> tuple[Any, TaskContext] | RunFinish | None:
        run = active.run
        if active.handed_back or active.lease_lost:
            return None  # another worker runs it now
        if active.cancel_requested or run.cancel_requested:
            return self.outcomes.cancelled(run)
        try:
            payload = task_type.load_payload(run.payload)
        except PydanticValidationError as exc:
            error = NonRetryableError(f"stored payload no longer fits {run.name}: {exc}")
            return self.outcomes.failed(run, error, reason="bad_payload")
        ctx = TaskContext(
            task_id=run.task_id,
            run_id=run.run_id,
            attempt=run.attempt,
            task_name=run.name,
            queue=run.queue,
            worker_id=self.worker_id,
            trace_id=run.trace_id,
            timeout=run.timeout,
        )
        active.ctx = ctx
        active.started_monotonic = time.monotonic()
        if self.observers.has("before_execute"):
            self.observers.notify("before_execute", ctx=ctx, payload=payload)
        return payload, ctx

    def _after(self, ctx: TaskContext, finish: RunFinish, started: float) -> None:
        if self.observers.has("after_execute"):
            self.observers.notify(
                "after_execute",
                ctx=ctx,
                outcome=ExecutionOutcome(
                    status=RunStatus(finish.status),
                    duration=time.monotonic() - started,
                    result=finish.result,
                    error_type=finish.error_type,
                    error_message=finish.error_message,
                    reason=finish.reason,
                ),
            )

    def _failure(self, run: ClaimedRun, ctx: TaskContext, exc: BaseException) -> RunFinish:
        if isinstance(exc, TaskCancelled) or ctx.cancel_requested:
            return self.outcomes.cancelled(run)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            exc = RuntimeError(f"handler raised {type(exc).__name__}")
        return self.outcomes.failed(run, exc)

    # --- def handlers ---------------------------------------------------------------------
    def _run_sync(self, active: ActiveRun, task_type: TaskType[Any]) -> None:
        # log lines written while it runs (ours, the handler's, its libraries') carry its ids
        context = logs.current_run.set((active.run, self.worker_id))
        try:
            finish = self._call_sync(active, task_type)
        except Exception as exc:  # a bug in taskrt itself: fail the run, keep the worker
            log.exception("internal error executing run %s", active.run.run_id)
            finish = self.outcomes.failed(active.run, exc, reason="worker_error")
        finally:
            logs.current_run.reset(context)
        self.settle(active, finish)

    def _call_sync(self, active: ActiveRun, task_type: TaskType[Any]) -> RunFinish | None:
        prepared = self._prepare(active, task_type)
        if not isinstance(prepared, tuple):
            return prepared
        payload, ctx = prepared
        started = time.monotonic()
        try:
            finish = self.outcomes.succeeded(active.run, task_type.invoke(payload, ctx))
        except BaseException as exc:
            finish = self._failure(active.run, ctx, exc)
        self._after(ctx, finish, started)
        return finish

    def _arm_timeout(self, active: ActiveRun, timeout: float) -> None:
        if not active.settled:
            active.timer = self.loop.call_later(timeout, self._sync_timed_out, active)

    def _sync_timed_out(self, active: ActiveRun) -> None:
        if active.settled:
            return
        run = active.run
        log.warning(
            "run %s timed out after %s s; its thread keeps running until the function returns "
            "and its result will be discarded",
            run.run_id,
            run.timeout,
            extra=logs.run_fields(run, self.worker_id),
        )
        error = TimeoutError(f"{run.name} exceeded its timeout of {run.timeout} s")
        active.timer = None
        self.settle(active, self.outcomes.failed(run, error, reason="timeout"))

    # --- async def handlers ---------------------------------------------------------------
    def _spawn_async(self, active: ActiveRun, task_type: TaskType[Any]) -> None:
        self.loop.create_task(self._run_async(active, task_type))

    async def _run_async(self, active: ActiveRun, task_type: TaskType[Any]) -> None:
        # set in this task's own context: the handler's task inherits it
        logs.current_run.set((active.run, self.worker_id))
        try:
            finish = await self._call_async(active, task_type)
        except Exception as exc:  # a bug in taskrt itself: fail the run, keep the worker
            log.exception("internal error executing run %s", active.run.run_id)
            finish = self.outcomes.failed(active.run, exc, reason="worker_error")
        self.settle(active, finish)

    async def _call_async(self, active: ActiveRun, task_type: TaskType[Any]) -> RunFinish | None:
        prepared = self._prepare(active, task_type)
        if not isinstance(prepared, tuple):
            return prepared
        payload, ctx = prepared
        run = active.run
        started = time.monotonic()
        handler: asyncio.Future[Any] = asyncio.ensure_future(task_type.invoke(payload, ctx))
        active.handler_task = handler
        if ctx.cancel_requested:
            handler.cancel()
        try:
            if run.timeout is None:
                result = await handler
            else:
                result = await asyncio.wait_for(handler, run.timeout)
            finish = self.outcomes.succeeded(run, result)
        except TimeoutError:
            error = TimeoutError(f"{run.name} exceeded its timeout of {run.timeout} s")
            finish = self.outcomes.failed(run, error, reason="timeout")
        except asyncio.CancelledError:
            if ctx.cancel_requested:
                finish = self.outcomes.cancelled(run)
            else:
                finish = self.outcomes.failed(
                    run, RuntimeError("the handler was cancelled"), reason="error"
                )
        except BaseException as exc:
            finish = self._failure(run, ctx, exc)
        self._after(ctx, finish, started)
        return finish
