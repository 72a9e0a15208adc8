"""Retry strategies: the small typed interface every strategy plugin implements.

A strategy is created per task from the strategy name and parameters stored on the task
(``retry="exponential", retry_params={"base": 2}``) by calling the registered factory with the
parameters as keyword arguments. When a run fails, the worker asks the strategy for a
:class:`RetryDecision`. Strategies never see the payload and never touch storage.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from taskrt import limits

RETRY_DELAY_LIMIT = limits.RETRY_DELAY_LIMIT
"""The longest retry delay taskrt ever schedules (ten years), whatever a strategy returns or
the settings say: far inside what every database can store as a timestamp. Built-in strategies
refuse parameters above it; ``TASKRT_MAX_RETRY_DELAY`` (30 days by default) caps lower."""


def bound_delay(delay: float, maximum: float) -> tuple[float, str | None]:
    """``delay`` made storable: between 0 and ``maximum`` seconds.

    Returns the bounded delay and, when it had to change, why (for a log line): negative and
    ``-inf`` become 0, ``+inf`` and anything above ``maximum`` become ``maximum``, NaN (no
    answer at all) becomes ``maximum`` too, so a broken strategy never retries in a hot loop.
    """
    try:
        value = float(delay)
    except (TypeError, ValueError, OverflowError):
        return maximum, f"not a number ({delay!r})"
    if math.isnan(value):
        return maximum, "NaN"
    if value < 0:
        return 0.0, f"negative ({value!r} s)"
    if value > maximum:
        return maximum, f"above the maximum ({value!r} s)"
    return value, None


@dataclass(frozen=True, slots=True)
class Failure:
    """What a strategy knows about a failed run."""

    attempt: int
    """Number of the attempt that just failed, counting from 1 (lost runs count too)."""
    retries_made: int
    """Retries already made for failures before this one (0 after the first failure); runs
    lost with their worker do not count, they have their own poison budget."""
    max_retries: int
    """Retries the task may have after its first attempt."""
    error_type: str
    """Qualified name of the exception the handler raised (or ``TimeoutError``)."""
    error_message: str

    @property
    def retries_left(self) -> int:
        """Retries still allowed after this failure."""
        return max(self.max_retries - self.retries_made, 0)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """A strategy's answer: retry after ``delay`` seconds, or give up."""

    retry: bool
    delay: float = 0.0
    reason: str = ""

    @classmethod
    def retry_in(cls, delay: float) -> RetryDecision:
        """Retry after ``delay`` seconds (negative delays are treated as 0; the worker caps
        every delay at ``TASKRT_MAX_RETRY_DELAY``)."""
        value = float(delay)
        return cls(retry=True, delay=value if math.isnan(value) else max(value, 0.0))

    @classmethod
    def give_up(cls, reason: str = "retries exhausted") -> RetryDecision:
        """Do not retry: the task fails and goes to the dead-letter queue."""
        return cls(retry=False, reason=reason)


@runtime_checkable
class RetryStrategy(Protocol):
    """Decides what happens after a failed run."""

    def decide(self, failure: Failure) -> RetryDecision:
        """Return whether to retry the task and after how long."""
        ...


RetryStrategyFactory = Callable[..., RetryStrategy]
"""Builds a strategy from the task's ``retry_params`` passed as keyword arguments.

A pydantic model class that also implements ``decide`` is the usual factory: constructing it
validates the parameters, so a typo is refused at enqueue time with the field named.
"""


class DelayStrategy(abc.ABC):
    """Helper base: retry while the task has retries left, waiting :meth:`delay` seconds.

    Subclasses implement only ``delay(retries_made)``; ``retries_made`` is 0 for the first retry.
    """

    def decide(self, failure: Failure) -> RetryDecision:
        """Retry after ``delay(retries_made)`` while retries are left; otherwise give up."""
        if failure.retries_left <= 0:
            return RetryDecision.give_up()
        return RetryDecision.retry_in(self.delay(failure.retries_made))

    @abc.abstractmethod
    def delay(self, retries_made: int) -> float:
        """Seconds to wait before the next attempt."""


def build_strategy(factory: RetryStrategyFactory, params: dict[str, Any]) -> RetryStrategy:
    """Call ``factory`` with ``params``; a plain function returning a strategy works too."""
    strategy = factory(**params)
    if not isinstance(strategy, RetryStrategy):
        raise TypeError(
            f"retry strategy factory {factory!r} returned {strategy!r}, which has no decide()"
        )
    return strategy
