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
        retry_later,
        chatty,
        chatty_async,
    ):
        register(task_type)
