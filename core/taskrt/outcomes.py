"""Turning what a handler did into a :class:`~taskrt.queue.base.RunFinish`.

Pure decisions, no I/O: which exceptions retry, how long to wait, what is stored about an
error. The worker calls these; the store writes their result.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import asdict, is_dataclass
from typing import Any

from pydantic import BaseModel

from taskrt.exceptions import NonRetryableError, Retry, TaskrtError
from taskrt.ids import uuid7
from taskrt.plugins import Registry
from taskrt.queue.base import ClaimedRun, RunFinish
from taskrt.retry import Failure, RetryDecision, RetryStrategy

log = logging.getLogger("taskrt.worker")

MAX_ERROR_MESSAGE = 2000
FALLBACK_MAX_DELAY = 300.0


def error_type_name(exc: BaseException) -> str:
    """``module.Qualname`` of an exception (builtins without the module)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def format_traceback(exc: BaseException, limit: int) -> str:
    """The traceback text, keeping its last ``limit`` characters (the frames nearest the error)."""
    text = "".join(traceback.format_exception(exc))
    if len(text) <= limit:
        return text
    return "... (truncated)\n" + text[-limit:]


def jsonable_result(value: Any) -> Any:
    """A handler's return value in the form stored as JSON.

    Pydantic models and dataclasses are dumped; anything else JSON cannot hold is stored as its
    string (documented in docs/design/decisions.md).
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))
    return value


class OutcomeBuilder:
    """Builds run finishes; caches retry strategies by (name, params)."""

    def __init__(self, registry: Registry, *, traceback_limit: int) -> None:
        self.registry = registry
        self.traceback_limit = traceback_limit
        self._strategies: dict[str, RetryStrategy | None] = {}

    def succeeded(self, run: ClaimedRun, result: Any) -> RunFinish:
        """The run returned ``result``."""
        return RunFinish(run=run, status="succeeded", result=jsonable_result(result))

    def cancelled(self, run: ClaimedRun, reason: str = "cancelled") -> RunFinish:
        """The run honoured a cancellation request."""
        return RunFinish(run=run, status="cancelled", reason=reason)

    def failed(
        self, run: ClaimedRun, exc: BaseException, *, reason: str | None = None
    ) -> RunFinish:
        """The run raised ``exc`` (or timed out): retry it or dead-letter it."""
        failure = Failure(
            attempt=run.attempt,
            retries_made=run.retry_count,
            max_retries=run.max_retries,
            error_type=error_type_name(exc),
            error_message=str(exc)[:MAX_ERROR_MESSAGE],
        )
        decision, reason = self._decide(run, exc, failure, reason)
        finish = RunFinish(
            run=run,
            status="failed",
            error_type=failure.error_type,
            error_message=failure.error_message,
            error_traceback=format_traceback(exc, self.traceback_limit),
            reason=reason,
        )
        if decision.retry:
            finish.retry_delay = decision.delay
            finish.next_run_id = uuid7()
        return finish

    def _decide(
        self, run: ClaimedRun, exc: BaseException, failure: Failure, reason: str | None
    ) -> tuple[RetryDecision, str]:
        if isinstance(exc, NonRetryableError):
            return RetryDecision.give_up("non-retryable error"), "non_retryable"
        if failure.retries_left <= 0:
            return RetryDecision.give_up(), "retries_exhausted"
        if isinstance(exc, Retry) and exc.delay is not None:
            return RetryDecision.retry_in(exc.delay), reason or "retry_requested"
        strategy = self._strategy(run)
        if strategy is None:
            delay = min(2.0**failure.retries_made, FALLBACK_MAX_DELAY)
            return RetryDecision.retry_in(delay), reason or "error"
        try:
            decision = strategy.decide(failure)
        except Exception:  # a broken strategy plugin must not lose the task
            log.exception("retry strategy %r raised; retrying after 60 s", run.retry)
            decision = RetryDecision.retry_in(60.0)
        if not decision.retry:
            return decision, "not_retried"
        return decision, reason or ("retry_requested" if isinstance(exc, Retry) else "error")

    def _strategy(self, run: ClaimedRun) -> RetryStrategy | None:
        key = f"{run.retry}:{json.dumps(run.retry_params, sort_keys=True)}"
        if key not in self._strategies:
            try:
                self._strategies[key] = self.registry.retry_strategy(run.retry, run.retry_params)
            except TaskrtError as exc:
                log.error(
                    "retry strategy %r is not usable on this worker (%s); using a capped "
                    "exponential fallback",
                    run.retry,
                    exc,
                )
                self._strategies[key] = None
        return self._strategies[key]
