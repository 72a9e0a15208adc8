"""Running one claimed run: payload, context, handler, timeout, cancellation, outcome.

``def`` handlers run entirely on a pool thread (:class:`~taskrt.worker.threads.HandlerThreads`):
the thread builds the context, calls the handler and reports the outcome, so a sync run costs
no trip through the event loop. ``async def`` handlers run on the worker's event loop.

Timeouts have two stages. At its timeout an ``async def`` handler is cancelled (a timer on the
loop). The hard deadline — the timeout for a ``def`` handler, which no one can stop, and the
timeout plus ``TASKRT_TIMEOUT_GRACE`` for an ``async def`` one — is kept by the
:class:`~taskrt.worker.watchdog.Watchdog` thread, which needs nothing from the loop: there a run
still going is failed with reason ``timeout`` and its slot written off, whether its coroutine
swallowed the cancellation or blocks the loop; the handler is abandoned and whatever it does
later is discarded. A handler that returns after its deadline is failed as timed out too, so a
run that overran is never recorded as succeeded.

Every run is *settled* exactly once — by its handler finishing, by its deadline, or by being
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

from taskrt import logs, metrics
from taskrt.context import TaskContext, current_tenant
from taskrt.exceptions import NonRetryableError, TaskCancelled, UnknownTaskError
from taskrt.handlers import TaskType
from taskrt.outcomes import OutcomeBuilder
from taskrt.plugins import Observers, Registry
from taskrt.records import ClaimedRun, ExecutionOutcome, RunFinish, RunStatus
from taskrt.worker.threads import HandlerThreads
from taskrt.worker.watchdog import Watchdog

log = logging.getLogger("taskrt.worker")


@dataclass(eq=False)
class ActiveRun:
    """A run this worker holds, from claim until its outcome is written or it is handed back."""

    run: ClaimedRun
    ctx: TaskContext | None = None
    handler_task: asyncio.Future[Any] | None = None
    timer: asyncio.TimerHandle | None = None
    started: bool = False
    is_async: bool = False
    deadline: float | None = None
    """Monotonic time of its timeout, once its handler started (None: no timeout)."""
    timed_out: bool = False
    fetched_monotonic: float = field(default_factory=time.monotonic)
    leased_monotonic: float = field(default_factory=time.monotonic)
    """Monotonic time just before its lease was taken: the lease is good for the TTL from
    then, or from a later renewal (:meth:`Heartbeat.vouches`)."""
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
        timeout_grace: float = 1.0,
        loop_stall_after: float = 2.0,
        worker_name: str = "",
    ) -> None:
        self.registry = registry
        self.observers = observers
        self.outcomes = outcomes
        self.threads = threads
        self.loop = loop
        self.worker_id = worker_id
        self.on_finish = on_finish
        self.on_done = on_done
        self.timeout_grace = timeout_grace
        self.watchdog: Watchdog[ActiveRun] = Watchdog(
            loop,
            expire=self._expire,
            stall_after=loop_stall_after,
            stalled=lambda _seconds: metrics.event_loop_stalled(worker_name),
        )

    # --- starting -------------------------------------------------------------------------
    def start(self, active: ActiveRun) -> None:
        """Start ``active`` (from any thread; never blocks)."""
        active.started = True
        run = active.run
        try:
            task_type = self.registry.task_type(run.name)
        except UnknownTaskError as exc:
            # the fetcher hands back runs of types this worker lacks before they get a slot
            # (taskrt.worker.foreign); this is only a guard against a path that skips it
            log.error(
                "run %s: task type %r is not installed on this worker",
                run.run_id,
                run.name,
                extra=logs.run_fields(run, self.worker_id),
            )
            self.settle(active, self.outcomes.failed(run, exc, reason="unknown_task"))
            return
        if task_type.is_async:
            active.is_async = True
            self.loop.call_soon_threadsafe(self._spawn_async, active, task_type)
            return
        self.threads.run(self._run_sync, active, task_type)

    def settle(self, active: ActiveRun, finish: RunFinish | None) -> bool:
        """Record the end of ``active`` once: tell ``after_execute`` observers, report
        ``finish`` (unless handed back), free its slot. Later calls (a handler outliving its
        deadline) do nothing and return False."""
        with active.lock:
            if active.settled:
                return False
            active.settled = True
            report = finish is not None and not active.handed_back
        if active.timer is not None:
            self.loop.call_soon_threadsafe(active.timer.cancel)
        if finish is not None and active.ctx is not None and active.started_monotonic is not None:
            self._after(active.ctx, finish, active.started_monotonic)
        if report:
            # even when the heartbeat saw the lease taken over, the outcome goes to the
            # store: its fenced UPDATE is what decides, and rejects it
            assert finish is not None
            if active.started_monotonic is not None:
                finish.start_delay = active.started_monotonic - active.fetched_monotonic
                active.ran_seconds = time.monotonic() - active.started_monotonic
            self.on_finish(active, finish)
        self.on_done(active)
        return True

    # --- deadlines ------------------------------------------------------------------------
    def start_watchdog(self) -> None:
        """Start enforcing hard deadlines and watching the event loop."""
        self.watchdog.start()

    def stop_watchdog(self) -> None:
        """Stop the watchdog thread."""
        self.watchdog.stop()

    def fail_overdue(self) -> int:
        """Fail every running run whose timeout has passed (at shutdown: such a run spends its
        attempt rather than being handed back). Returns how many were failed."""
        now = time.monotonic()
        overdue = [a for a in self.watchdog.live() if a.deadline is not None and a.deadline <= now]
        return sum(self._expire(active) for active in overdue)

    def _watch(self, active: ActiveRun, timeout: float | None) -> None:
        if timeout is None or active.started_monotonic is None:
            return
        active.deadline = active.started_monotonic + timeout
        grace = self.timeout_grace if active.is_async else 0.0
        self.watchdog.watch(active, active.deadline + grace)

    def _overran(self, active: ActiveRun) -> bool:
        return active.timed_out or (
            active.deadline is not None and time.monotonic() >= active.deadline
        )

    def _timeout_finish(self, run: ClaimedRun) -> RunFinish:
        error = TimeoutError(f"{run.name} exceeded its timeout of {run.timeout} s")
        return self.outcomes.failed(run, error, reason="timeout")

    def _expire(self, active: ActiveRun) -> bool:
        """Fail ``active`` at its hard deadline and write its slot off (any thread)."""
        if active.settled:
            return False
        run = active.run
        kind = "coroutine" if active.is_async else "thread"
        if active.is_async:
            handler = active.handler_task
            if handler is not None:  # again: a blocked loop never ran the first cancel
                self.loop.call_soon_threadsafe(handler.cancel)
            message = (
                "run %s did not stop within %s s of its timeout of %s s (it swallowed the "
                "cancellation or blocks the event loop): failed as timed out, its slot written "
                "off and its coroutine abandoned"
            )
            args: tuple[Any, ...] = (run.run_id, self.timeout_grace, run.timeout)
        else:
            message = (
                "run %s timed out after %s s; its thread keeps running until the function "
                "returns and its result will be discarded (%d handler threads alive)"
            )
            args = (run.run_id, run.timeout, self.threads.size)
        if not self.settle(active, self._timeout_finish(run)):
            return False
        log.warning(message, *args, extra=logs.run_fields(run, self.worker_id))
        metrics.handler_abandoned(run.queue, run.name, kind, tenant=run.tenant)
        return True

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
            tenant=run.tenant,
        )
        active.ctx = ctx
        active.started_monotonic = ctx.started_monotonic
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
        # tasks the handler enqueues without a client go to its own tenant
        tenant = current_tenant.set(active.run.tenant)
        try:
            finish = self._call_sync(active, task_type)
        except Exception as exc:  # a bug in taskrt itself: fail the run, keep the worker
            log.exception("internal error executing run %s", active.run.run_id)
            finish = self.outcomes.failed(active.run, exc, reason="worker_error")
        finally:
            current_tenant.reset(tenant)
            logs.current_run.reset(context)
        self.settle(active, finish)

    def _call_sync(self, active: ActiveRun, task_type: TaskType[Any]) -> RunFinish | None:
        prepared = self._prepare(active, task_type)
        if not isinstance(prepared, tuple):
            return prepared
        payload, ctx = prepared
        self._watch(active, active.run.timeout)
        try:
            result = task_type.invoke(payload, ctx)
        except BaseException as exc:
            if self._overran(active):
                return self._timeout_finish(active.run)
            return self._failure(active.run, ctx, exc)
        if self._overran(active):
            return self._timeout_finish(active.run)
        return self.outcomes.succeeded(active.run, result)

    # --- async def handlers ---------------------------------------------------------------
    def _spawn_async(self, active: ActiveRun, task_type: TaskType[Any]) -> None:
        self.loop.create_task(
            self._run_async(active, task_type), name=f"taskrt run {active.run.run_id}"
        )

    async def _run_async(self, active: ActiveRun, task_type: TaskType[Any]) -> None:
        # set in this task's own context: the handler's task inherits it
        logs.current_run.set((active.run, self.worker_id))
        current_tenant.set(active.run.tenant)
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
        handler: asyncio.Future[Any] = asyncio.ensure_future(task_type.invoke(payload, ctx))
        if isinstance(handler, asyncio.Task):  # named, so a stalled loop's report names the run
            handler.set_name(f"taskrt handler of run {run.run_id} ({run.name})")
        active.handler_task = handler
        if ctx.cancel_requested:
            handler.cancel()
        if run.timeout is not None:
            self._watch(active, run.timeout)
            active.timer = self.loop.call_later(run.timeout, self._async_timed_out, active)
        try:
            result = await handler
        except asyncio.CancelledError:
            if self._overran(active):
                return self._timeout_finish(run)
            if ctx.cancel_requested:
                return self.outcomes.cancelled(run)
            return self.outcomes.failed(
                run, RuntimeError("the handler was cancelled"), reason="error"
            )
        except BaseException as exc:
            if self._overran(active):
                return self._timeout_finish(run)
            return self._failure(run, ctx, exc)
        if self._overran(active):  # it blocked the loop past its timeout, then returned
            return self._timeout_finish(run)
        return self.outcomes.succeeded(run, result)

    def _async_timed_out(self, active: ActiveRun) -> None:
        """On the loop, at the timeout: cancel the handler; the watchdog fails the run at the
        hard deadline if the handler has not stopped by then."""
        active.timer = None
        if active.settled:
            return
        active.timed_out = True
        if active.handler_task is not None:
            active.handler_task.cancel()
