"""Running one claimed run: payload, context, handler, timeout, cancellation, outcome.

Everything here runs on the worker's event loop thread. ``async def`` handlers run on that
loop; ``def`` handlers run on :class:`~taskrt.worker.threads.HandlerThreads` and are awaited.
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

from taskrt.context import TaskContext
from taskrt.exceptions import NonRetryableError, TaskCancelled, UnknownTaskError
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
    task: asyncio.Task[Any] | None = None
    handler_task: asyncio.Future[Any] | None = None
    handed_back: bool = False
    lease_lost: bool = False
    done: bool = False
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request_cancel(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ask the handler to stop: set the context flag; cancel an async handler."""
        if self.ctx is not None:
            self.ctx.request_cancel()
        handler = self.handler_task
        if handler is not None and isinstance(handler, asyncio.Task):
            loop.call_soon_threadsafe(handler.cancel)


class RunExecutor:
    """Executes runs on an event loop and reports each finish to ``on_finish``."""

    def __init__(
        self,
        *,
        registry: Registry,
        observers: Observers,
        outcomes: OutcomeBuilder,
        threads: HandlerThreads,
        worker_id: Any,
        on_finish: Callable[[ActiveRun, RunFinish], None],
        on_slot_free: Callable[[], None],
    ) -> None:
        self.registry = registry
        self.observers = observers
        self.outcomes = outcomes
        self.threads = threads
        self.worker_id = worker_id
        self.on_finish = on_finish
        self.on_slot_free = on_slot_free

    async def execute(self, active: ActiveRun) -> None:
        """Run ``active`` to its outcome; always frees its slot exactly once."""
        run = active.run
        finish: RunFinish | None = None
        try:
            if active.handed_back:
                # handed back at shutdown before it began: another worker runs it, not us
                return
            finish = await self._execute(active)
        except Exception as exc:  # a bug in taskrt itself: fail the run, keep the worker
            log.exception("internal error executing run %s", run.run_id)
            finish = self.outcomes.failed(run, exc, reason="worker_error")
        finally:
            with active.lock:
                if not active.handed_back:
                    active.done = True
            self.on_slot_free()
        if finish is not None and not active.handed_back:
            self.on_finish(active, finish)

    async def _execute(self, active: ActiveRun) -> RunFinish | None:
        run = active.run
        try:
            task_type = self.registry.task_type(run.name)
        except UnknownTaskError as exc:
            log.error("run %s: task type %r is not installed on this worker", run.run_id, run.name)
            return self.outcomes.failed(run, exc, reason="unknown_task")
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
        if run.cancel_requested:
            ctx.request_cancel()
        if self.observers.has("before_execute"):
            self.observers.notify("before_execute", ctx=ctx, payload=payload)
        started = time.monotonic()
        finish = await self._call(active, task_type, payload, ctx)
        if finish is not None and self.observers.has("after_execute"):
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
        return finish

    async def _call(
        self, active: ActiveRun, task_type: Any, payload: Any, ctx: TaskContext
    ) -> RunFinish | None:
        run = active.run
        try:
            if task_type.is_async:
                handler: asyncio.Future[Any] = asyncio.ensure_future(task_type.invoke(payload, ctx))
            else:
                handler = asyncio.wrap_future(self.threads.submit(task_type.invoke, payload, ctx))
            active.handler_task = handler
            if ctx.cancel_requested and isinstance(handler, asyncio.Task):
                handler.cancel()
            if run.timeout is None:
                result = await handler
            elif task_type.is_async:
                result = await asyncio.wait_for(handler, run.timeout)
            else:
                # shield: a timeout must not try to cancel the thread (it cannot be stopped)
                result = await asyncio.wait_for(asyncio.shield(handler), run.timeout)
        except TimeoutError:
            if active.handed_back:
                return None
            error = TimeoutError(f"{run.name} exceeded its timeout of {run.timeout} s")
            if not task_type.is_async:
                log.warning(
                    "run %s timed out; its thread keeps running until the function returns "
                    "and its result will be discarded",
                    run.run_id,
                )
            return self.outcomes.failed(run, error, reason="timeout")
        except (asyncio.CancelledError, TaskCancelled) as exc:
            if active.handed_back:
                return None
            if ctx.cancel_requested:
                return self.outcomes.cancelled(run)
            if isinstance(exc, asyncio.CancelledError):
                return self.outcomes.failed(
                    run, RuntimeError("the handler was cancelled"), reason="error"
                )
            return self.outcomes.cancelled(run)
        except BaseException as exc:
            if active.handed_back:
                return None
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                exc = RuntimeError(f"handler raised {type(exc).__name__}")
            if ctx.cancel_requested:
                return self.outcomes.cancelled(run)
            return self.outcomes.failed(run, exc)
        if active.handed_back:
            return None
        return self.outcomes.succeeded(run, result)
