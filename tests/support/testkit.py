"""Task types used only by the tests (loaded with TASKRT_PLUGINS_MODULES=tests.support.testkit)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import taskrt


@taskrt.task("testkit.crash", max_retries=5)
def crash(payload: Any) -> None:
    """Kill the worker process outright, as a segfault or the OOM killer would."""
    os._exit(1)


@taskrt.task("testkit.fail", max_retries=2, retry="fixed", retry_params={"delay": 0.2})
def fail(payload: Any, ctx: taskrt.TaskContext) -> None:
    """Always raise."""
    raise RuntimeError(f"attempt {ctx.attempt} failed on purpose")


@taskrt.task("testkit.nonretryable", max_retries=5)
def nonretryable(payload: Any) -> None:
    """Raise a non-retryable error."""
    raise taskrt.NonRetryableError("this cannot work")


@taskrt.task("testkit.block")
def block(payload: Any, ctx: taskrt.TaskContext) -> dict[str, Any]:
    """A sync handler that waits up to ``seconds`` and stops early when cancelled."""
    if ctx.wait_cancelled(float(payload.get("seconds", 30))):
        ctx.raise_if_cancelled()
    return {"slept": payload.get("seconds", 30)}


@taskrt.task("testkit.spin", timeout=0.5)
def spin(payload: Any) -> None:
    """A sync handler that ignores its timeout (sleeps ``seconds``)."""
    time.sleep(float(payload.get("seconds", 2)))


@taskrt.task("testkit.async_slow", timeout=0.5)
async def async_slow(payload: Any) -> None:
    """An async handler that outlives its timeout."""
    await asyncio.sleep(float(payload.get("seconds", 5)))


@taskrt.task("testkit.async_swallow", timeout=0.5)
async def async_swallow(payload: Any) -> str:
    """An async handler that swallows every cancellation and keeps going for ``seconds``."""
    end = time.monotonic() + float(payload.get("seconds", 30))
    while (left := end - time.monotonic()) > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:
            continue
    return "swallowed"


@taskrt.task("testkit.async_block", timeout=0.5)
async def async_block(payload: Any) -> str:
    """An async handler that blocks the event loop for ``seconds`` (time.sleep, no await)."""
    time.sleep(float(payload.get("seconds", 3)))  # noqa: ASYNC251 - blocking is the point
    return "blocked"


@taskrt.task("testkit.retry_later", max_retries=1)
def retry_later(payload: Any, ctx: taskrt.TaskContext) -> str:
    """Ask for a retry after ``delay`` seconds on the first attempt."""
    if ctx.attempt == 1:
        raise taskrt.Retry(delay=float(payload.get("delay", 0.3)))
    return "second time lucky"


@taskrt.task("testkit.chatty")
def chatty(payload: Any) -> None:
    """Log through a library's logger (not ``ctx.logger``), from a ``def`` handler."""
    logging.getLogger("testkit.library").info("library line from a def handler")


@taskrt.task("testkit.chatty_async")
async def chatty_async(payload: Any) -> None:
    """Log through a library's logger (not ``ctx.logger``), from an ``async def`` handler."""
    await asyncio.sleep(0)
    logging.getLogger("testkit.library").info("library line from an async handler")


class _AbsurdDelays:
    """A retry strategy plugin answering whatever delay its ``delay`` parameter names
    ("nan", "inf", "-inf", "1e308", ...): what a buggy third-party strategy may return."""

    def __init__(self, delay: str = "inf") -> None:
        self.value = float(delay)

    def decide(self, failure: taskrt.Failure) -> taskrt.RetryDecision:
        if failure.retries_left <= 0:
            return taskrt.RetryDecision.give_up()
        return taskrt.RetryDecision(retry=True, delay=self.value)  # not retry_in: unfiltered


@taskrt.hookimpl(specname="register_retry_strategies")
def register_testkit_retry_strategies(register: Callable[[str, Any], None]) -> None:
    """Register the test retry strategies."""
    register("testkit.absurd", _AbsurdDelays)


@taskrt.task("testkit.absurd_retry", max_retries=3, retry="testkit.absurd")
def absurd_retry(payload: Any) -> None:
    """Always raise; retried after whatever delay the task's ``testkit.absurd`` params say."""
    raise RuntimeError("failing for an absurd retry delay")


@taskrt.task("testkit.nul_result")
def nul_result(payload: Any) -> str:
    """Return text PostgreSQL cannot store in JSON (a NUL character)."""
    return "before\x00after"


@taskrt.task("testkit.deep_result", max_retries=3)
def deep_result(payload: Any) -> Any:
    """Return a list nested ``payload["depth"]`` levels deep, or a lone surrogate when
    ``payload["surrogate"]`` is set: results no read could return."""
    if payload.get("surrogate"):
        return {"text": "\ud800"}
    value: Any = 1
    for _ in range(int(payload["depth"])):
        value = [value]
    return value


@taskrt.task("testkit.record", max_retries=3)
def record(payload: Any, ctx: taskrt.TaskContext) -> dict[str, Any]:
    """Append one line per execution to the file ``payload["log"]`` (wall time, pid, task, run,
    attempt), then sleep ``ms``; ask for a retry after ``retry_delay`` seconds on attempt 1
    if given, or kill the worker if ``crash`` is set. The chaos tests count executions with it."""
    line = f"{time.time():.6f} {os.getpid()} {ctx.task_id} {ctx.run_id} {ctx.attempt}\n"
    fd = os.open(payload["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one small O_APPEND write: lines never interleave
    finally:
        os.close(fd)
    if payload.get("crash"):
        os._exit(1)
    if ctx.attempt == 1 and payload.get("retry_delay") is not None:
        raise taskrt.Retry(delay=float(payload["retry_delay"]))
    time.sleep(float(payload.get("ms", 0)) / 1000)
    return {"attempt": ctx.attempt}


@taskrt.task("testkit.child")
def child(payload: Any, ctx: taskrt.TaskContext) -> dict[str, Any]:
    """A task another task enqueues; returns its payload and its tenant."""
    return {"payload": payload, "tenant": ctx.tenant}


@taskrt.task("testkit.spawn")
def spawn(payload: Any, ctx: taskrt.TaskContext) -> dict[str, Any]:
    """Enqueue a ``testkit.child`` without a client (the default client): it must land in
    this task's tenant."""
    result = child.enqueue({"parent": str(ctx.task_id)})
    return {"child": str(result.id), "tenant": ctx.tenant}


@taskrt.task("testkit.spawn_async")
async def spawn_async(payload: Any, ctx: taskrt.TaskContext) -> dict[str, Any]:
    """:func:`spawn` from an ``async def`` handler (the enqueue runs on a thread of its own)."""
    result = await asyncio.to_thread(child.enqueue, {"parent": str(ctx.task_id)})
    return {"child": str(result.id), "tenant": ctx.tenant}


@taskrt.hookimpl
def register_task_handlers(register: Callable[[taskrt.TaskType[Any]], None]) -> None:
    """Register the test task types."""
    for task_type in (
        crash,
        fail,
        nonretryable,
        block,
        spin,
        async_slow,
        async_swallow,
        async_block,
        retry_later,
        chatty,
        chatty_async,
        absurd_retry,
        nul_result,
        deep_result,
        record,
        child,
        spawn,
        spawn_async,
    ):
        register(task_type)
