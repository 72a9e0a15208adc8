"""Task types used by the benchmarks (loaded with TASKRT_PLUGINS_MODULES=bench.handlers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import taskrt


@taskrt.task("bench.noop", max_retries=0)
def noop(payload: Any) -> None:
    """Do nothing: measures the runtime's own cost per task."""


@taskrt.task("bench.pickup", max_retries=0)
def pickup(payload: dict[str, int]) -> int:
    """Return nanoseconds from the producer's clock stamp ``t0`` to this handler starting."""
    return time.time_ns() - int(payload["t0"])


@taskrt.hookimpl
def register_task_handlers(register: Callable[[taskrt.TaskType[Any]], None]) -> None:
    """Register the benchmark task types."""
    register(noop)
    register(pickup)
