"""Built-in retry strategies: ``exponential``, ``fixed``, ``linear`` and ``none``.

Each is a pydantic model, so its parameters are validated when a task is enqueued (a typo in
``retry_params`` is refused with the field named), and a :class:`~taskrt.retry.DelayStrategy`,
so it only says how long to wait; the core's base class stops once ``max_retries`` is spent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskrt import hookimpl
from taskrt.retry import DelayStrategy, Failure, RetryDecision


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exponential(_Params, DelayStrategy):
    """delay = base x factor^n, capped at ``max_delay``; n is the number of retries already made.

    ``jitter=True`` draws the delay uniformly from [0, delay] ("full jitter"), which spreads a
    crowd of failing tasks out instead of retrying them in lock-step.
    """

    base: float = Field(default=1.0, ge=0, description="Seconds before the first retry.")
    factor: float = Field(default=2.0, ge=1, description="Growth per retry.")
    max_delay: float = Field(default=3600.0, ge=0, description="Upper bound in seconds.")
    jitter: bool = Field(default=False, description="Full jitter: uniform in [0, delay].")

    def delay(self, retries_made: int) -> float:
        """Seconds to wait before the next attempt."""
        try:
            raw = self.base * self.factor**retries_made
        except OverflowError:
            raw = self.max_delay
        capped = min(raw, self.max_delay)
        if self.jitter:
            return random.uniform(0, capped)  # noqa: S311 - jitter, not cryptography
        return capped


class Fixed(_Params, DelayStrategy):
    """The same delay before every retry."""

    delay_seconds: float = Field(
        default=10.0, ge=0, alias="delay", description="Seconds per retry."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def delay(self, retries_made: int) -> float:
        """Seconds to wait before the next attempt."""
        return self.delay_seconds


class Linear(_Params, DelayStrategy):
    """delay = base + step x n, capped at ``max_delay``; n is the number of retries already made."""

    base: float = Field(default=1.0, ge=0, description="Seconds before the first retry.")
    step: float = Field(default=1.0, ge=0, description="Seconds added per retry.")
    max_delay: float = Field(default=3600.0, ge=0, description="Upper bound in seconds.")

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
