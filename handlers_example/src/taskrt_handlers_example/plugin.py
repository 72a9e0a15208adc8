"""The whole plugin: four task types and one retry strategy.

taskrt finds this module through the entry point in ``pyproject.toml``::

    [project.entry-points.taskrt]
    example = "taskrt_handlers_example.plugin"
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import taskrt
from taskrt.retry import DelayStrategy

# --- task types ----------------------------------------------------------------------------


@taskrt.task("example.echo")
def echo(payload: Any) -> Any:
    """Return the payload unchanged (a plain ``def`` handler without a context)."""
    return payload


class SleepPayload(BaseModel):
    """How long ``example.sleep`` sleeps."""

    ms: int = Field(default=100, ge=0, le=3_600_000, description="Milliseconds to sleep.")


@taskrt.task("example.sleep", payload=SleepPayload)
async def sleep(payload: SleepPayload, ctx: taskrt.TaskContext) -> dict[str, int]:
    """Sleep ``ms`` milliseconds on the event loop (an ``async def`` handler; cancellable)."""
    await asyncio.sleep(payload.ms / 1000)
    return {"slept_ms": payload.ms, "attempt": ctx.attempt}


class FlakyPayload(BaseModel):
    """When ``example.flaky`` fails: until an attempt number, or at random."""

    succeed_on_attempt: int | None = Field(
        default=None, ge=1, description="Fail every attempt before this one."
    )
    p: float | None = Field(
        default=None, ge=0, le=1, description="Otherwise fail with this probability."
    )


class FlakyError(RuntimeError):
    """The failure ``example.flaky`` raises on purpose."""


@taskrt.task("example.flaky", payload=FlakyPayload, max_retries=3, retry="example.fibonacci")
def flaky(payload: FlakyPayload, ctx: taskrt.TaskContext) -> dict[str, int]:
    """Fail until attempt ``succeed_on_attempt``, or with probability ``p``; else succeed."""
    if payload.succeed_on_attempt is not None and ctx.attempt < payload.succeed_on_attempt:
        raise FlakyError(f"attempt {ctx.attempt} fails before {payload.succeed_on_attempt}")
    if payload.p is not None and random.random() < payload.p:  # noqa: S311 - test data
        raise FlakyError(f"attempt {ctx.attempt} failed at random (p={payload.p})")
    return {"succeeded_on_attempt": ctx.attempt}


class WordCountPayload(BaseModel):
    """Text for ``example.word_count``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000, description="The text to count.")
    top: int = Field(default=3, ge=0, le=100, description="How many frequent words to report.")


@taskrt.task("example.word_count", payload=WordCountPayload, queue="default", timeout=60)
def word_count(payload: WordCountPayload, ctx: taskrt.TaskContext) -> dict[str, Any]:
    """Count lines, words and characters, and report the most frequent words."""
    words = re.findall(r"[\w']+", payload.text.lower())
    ctx.logger.info("counted %d words", len(words))
    return {
        "lines": len(payload.text.splitlines()),
        "words": len(words),
        "chars": len(payload.text),
        "top": Counter(words).most_common(payload.top),
    }


# --- a retry strategy from a separately installed package -------------------------------------


class Fibonacci(BaseModel, DelayStrategy):
    """delay = base * fib(n + 1), capped at ``max_delay``: 1, 1, 2, 3, 5, 8 ... * base."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: float = Field(default=1.0, ge=0, description="Seconds per Fibonacci unit.")
    max_delay: float = Field(default=600.0, ge=0, description="Upper bound in seconds.")

    def delay(self, retries_made: int) -> float:
        """Seconds to wait before the next attempt."""
        a, b = 1, 1
        for _ in range(min(retries_made, 90)):
            a, b = b, a + b
        return min(self.base * a, self.max_delay)


# --- hooks ------------------------------------------------------------------------------------


@taskrt.hookimpl
def register_task_handlers(register: Callable[[taskrt.TaskType[Any]], None]) -> None:
    """Register the four example task types."""
    for task_type in (echo, sleep, flaky, word_count):
        register(task_type)


@taskrt.hookimpl
def register_retry_strategies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``example.fibonacci``."""
    register("example.fibonacci", Fibonacci)
