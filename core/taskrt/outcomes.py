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

from taskrt import jsonlimits, logs
from taskrt.exceptions import NonRetryableError, Retry, TaskrtError
from taskrt.ids import uuid7
from taskrt.plugins import Registry
from taskrt.records import ClaimedRun, RunFinish
from taskrt.retry import Failure, RetryDecision, RetryStrategy, bound_delay

log = logging.getLogger("taskrt.worker")

MAX_ERROR_MESSAGE = 2000
FALLBACK_MAX_DELAY = 300.0
DEFAULT_MAX_RETRY_DELAY = 30 * 86400.0

# a strategy that returns absurd delays does so for every task using it: one line a minute
_clamped = logs.RateLimitedLog(60.0)


def storable_text(text: str) -> str:
    """``text`` without what a database text column refuses: NUL characters (PostgreSQL) and
    lone surrogates (not encodable as UTF-8), so an error message can always be written."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


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

    def __init__(
        self,
        registry: Registry,
        *,
        traceback_limit: int,
        max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY,
        max_json_depth: int = jsonlimits.DEFAULT_MAX_DEPTH,
    ) -> None:
        self.registry = registry
        self.max_json_depth = max_json_depth
        """A result nested deeper fails its run (``TASKRT_MAX_JSON_DEPTH``)."""
        self.traceback_limit = traceback_limit
        self.max_retry_delay = max_retry_delay
        """Every retry delay is capped at this (``TASKRT_MAX_RETRY_DELAY``)."""
        self._strategies: dict[str, RetryStrategy | None] = {}

    def succeeded(self, run: ClaimedRun, result: Any) -> RunFinish:
        """The run returned ``result``; a result no read could return (nested too deep, lone
        surrogates) fails the run instead, with reason ``unstorable_result``."""
        try:
            stored = jsonable_result(result)
        except RecursionError:
            why = "it is nested too deep to encode as JSON"
        else:
            # NUL characters are the store's to judge (PostgreSQL refuses them, SQLite keeps
            # them); what no read could return anywhere fails the run here
            problems = jsonlimits.json_problems(
                stored, [], max_depth=self.max_json_depth, unreadable_only=True
            )
            if not problems:
                return RunFinish(run=run, status="succeeded", result=stored)
            where = ".".join(map(str, problems[0]["loc"])) or "the result"
            why = f"{where}: {problems[0]['msg']}"
        exc = NonRetryableError(f"the handler's result cannot be stored: {why}")
        log.warning("run %s of task %s: %s", run.run_id, run.task_id, exc)
        finish = self.failed(run, exc)
        finish.reason = "unstorable_result"
        return finish

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
            error_message=storable_text(str(exc)[:MAX_ERROR_MESSAGE]),
        )
        decision, reason = self._decide(run, exc, failure, reason)
        finish = RunFinish(
            run=run,
            status="failed",
            error_type=failure.error_type,
            error_message=failure.error_message,
            error_traceback=storable_text(format_traceback(exc, self.traceback_limit)),
            reason=reason,
        )
        if decision.retry:
            finish.retry_delay = self._bounded(run, exc, decision.delay)
            finish.next_run_id = uuid7()
        return finish

    def _bounded(self, run: ClaimedRun, exc: BaseException, delay: float) -> float:
        """``delay`` between 0 and the maximum, whatever a strategy (or ``Retry(delay=)``)
        returned: a next-attempt time the database cannot store would stop the worker's
        finisher (NaN, infinities and 1e308 included)."""
        bounded, why = bound_delay(delay, self.max_retry_delay)
        if why is not None:
            source = "Retry(delay=...)" if isinstance(exc, Retry) else f"strategy {run.retry!r}"
            _clamped.log(
                log,
                logging.WARNING,
                ("clamped", source),
                "retry delay from %s is %s; using %.0f s (TASKRT_MAX_RETRY_DELAY is %.0f s)",
                source,
                why,
                bounded,
                self.max_retry_delay,
                extra=logs.run_fields(run),
            )
        return bounded

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
