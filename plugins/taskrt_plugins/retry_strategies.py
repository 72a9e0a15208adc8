"""Built-in retry strategies: ``exponential``, ``fixed``, ``linear`` and ``none``.

Each is a pydantic model, so its parameters are validated when a task is enqueued (a typo in
``retry_params`` is refused with the field named), and a :class:`~taskrt.retry.DelayStrategy`,
so it only says how long to wait; the core's base class stops once ``max_retries`` is spent.

Every duration parameter must be a finite number of seconds between 0 and
:data:`~taskrt.retry.RETRY_DELAY_LIMIT` (ten years), and ``factor`` at most 1000: a task whose
retry would fall due at a time no database can store is refused when it is enqueued (or its
schedule created or changed), with the field named. The worker further caps every delay at
``TASKRT_MAX_RETRY_DELAY``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskrt import hookimpl
from taskrt.retry import RETRY_DELAY_LIMIT, DelayStrategy, Failure, RetryDecision

MAX_FACTOR = 1000.0


def _seconds(default: float, description: str, alias: str | None = None) -> Any:
    """A duration parameter: finite, from 0 to RETRY_DELAY_LIMIT seconds."""
    return Field(
        default=default,
        ge=0,
        le=RETRY_DELAY_LIMIT,
        allow_inf_nan=False,
        alias=alias,
        description=f"{description} At most {RETRY_DELAY_LIMIT:.0f} s (ten years).",
    )


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exponential(_Params, DelayStrategy):
    """delay = base x factor^n, capped at ``max_delay``; n is the number of retries already made.

    ``jitter=True`` draws the delay uniformly from [0, delay] ("full jitter"), which spreads a
    crowd of failing tasks out instead of retrying them in lock-step.
    """

    base: float = _seconds(1.0, "Seconds before the first retry.")
    factor: float = Field(
        default=2.0,
        ge=1,
        le=MAX_FACTOR,
        allow_inf_nan=False,
        description=f"Growth per retry, from 1 to {MAX_FACTOR:.0f}.",
    )
    max_delay: float = _seconds(3600.0, "Upper bound in seconds.")
    jitter: bool = Field(default=False, description="Full jitter: uniform in [0, delay].")

    def delay(self, retries_made: int) -> float:
        """Seconds to wait before the next attempt."""
        try:
            raw = self.base * self.factor**retries_made
        except OverflowError:
            raw = self.max_delay
        capped = min(raw, self.max_delay)  # inf (base x a huge power) is capped too
        if self.jitter:
            return random.uniform(0, capped)  # noqa: S311 - jitter, not cryptography
        return capped


class Fixed(_Params, DelayStrategy):
    """The same delay before every retry."""

    delay_seconds: float = _seconds(10.0, "Seconds per retry.", alias="delay")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def delay(self, retries_made: int) -> float:
        """Seconds to wait before the next attempt."""
        return self.delay_seconds


class Linear(_Params, DelayStrategy):
    """delay = base + step x n, capped at ``max_delay``; n is the number of retries already made."""

    base: float = _seconds(1.0, "Seconds before the first retry.")
    step: float = _seconds(1.0, "Seconds added per retry.")
    max_delay: float = _seconds(3600.0, "Upper bound in seconds.")

    def delay(self, retries_made: int) -> float:
        """Seconds to wait before the next attempt."""
        return min(self.base + self.step * retries_made, self.max_delay)


class NoRetry(_Params):
    """Never retry: the first failure dead-letters the task, whatever ``max_retries`` says."""

    def decide(self, failure: Failure) -> RetryDecision:
        """Always give up."""
        return RetryDecision.give_up("retry strategy 'none'")


STRATEGIES: dict[str, Callable[..., Any]] = {
    "exponential": Exponential,
    "fixed": Fixed,
    "linear": Linear,
    "none": NoRetry,
}


@hookimpl
def register_retry_strategies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the four built-in strategies."""
    for name, factory in STRATEGIES.items():
        register(name, factory)
