"""Log lines for people and for machines: one JSON object per line, or text.

Services (``taskrt worker``, ``api``, ``scheduler``, ``dev``) call :func:`configure_logging`
with ``TASKRT_LOG_FORMAT`` (``auto`` by default: text on a terminal, JSON otherwise) or their
``--log-format`` option; the CLI's
one-shot commands log text warnings to standard error. Everything goes through the standard
:mod:`logging` module, so a handler's ``ctx.logger`` lines, taskrt's own lines and those of the
libraries a handler uses come out alike.

A JSON line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``service``, ``logger`` and
``message``, then the ids of the task run it is about — ``trace_id``, ``task_id``, ``run_id``,
``attempt``, ``worker_id``, ``queue``, ``task_type`` — when they are known, any other ``extra``
fields, and ``error`` (``type``, ``message``, ``traceback``) when there is one. The ids come, in
this order of precedence, from the record's ``extra`` (what ``TaskContext.logger`` and
:func:`run_fields` give), from :data:`current_run` (set by the worker while it executes a run,
on the handler's thread or task), from :data:`current_trace_id` (set by the HTTP API while it
serves a request) and from the process (the worker id of ``taskrt worker``).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from taskrt.records import ClaimedRun, LostRun, RunFinish
    from taskrt.settings import Settings

Service = Literal["api", "worker", "scheduler", "dev", "cli"]
LogFormat = Literal["json", "text"]

_success_level = logging.DEBUG
"""The level of a worker's line per succeeded run: INFO in text logs (a person watching a
terminal sees every task finish), DEBUG in JSON logs (a collector needs no line per success)."""


def resolve_format(log_format: str | None, stream: IO[str] | None = None) -> LogFormat:
    """``auto`` (or None) becomes ``text`` when ``stream`` (stderr) is a terminal, else ``json``."""
    if log_format in ("json", "text"):
        return log_format  # type: ignore[return-value]
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # a replaced or closed stream
        return "json"


CONTEXT_FIELDS = ("trace_id", "task_id", "run_id", "attempt", "worker_id", "queue", "task_type")
"""The ids a line may carry, in the order they are written."""

current_run: ContextVar[tuple[ClaimedRun, Any] | None] = ContextVar(
    "taskrt_current_run", default=None
)
"""(run, worker id) of the run executing in this thread or asyncio task, set by the worker."""

current_trace_id: ContextVar[str | None] = ContextVar("taskrt_trace_id", default=None)
"""The trace id (request id) of the HTTP request being served."""

_process_fields: dict[str, str] = {}
"""Fields every line of this process carries (``worker_id`` in ``taskrt worker``)."""

# attributes every LogRecord has; anything else on a record came from ``extra``
_RECORD_ATTRS = frozenset(
    [
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",  # uvicorn's coloured copy of the message
        "error_type",
        "error_message",
        "error_traceback",
        *CONTEXT_FIELDS,
    ]
)


def run_fields(run: ClaimedRun, worker_id: Any = None) -> dict[str, Any]:
    """``extra`` for a line about ``run`` written outside its execution (the finisher, the
    heartbeat, a timeout), so it carries the same ids as the lines written while it ran."""
    return {
        "trace_id": run.trace_id,
        "task_id": run.task_id,
        "run_id": run.run_id,
        "attempt": run.attempt,
        "worker_id": worker_id,
        "queue": run.queue,
        "task_type": run.name,
    }


def log_outcomes(logger: logging.Logger, finishes: Sequence[RunFinish], worker_id: Any) -> None:
    """The worker's lines about outcomes the store accepted: a retry (INFO) and a dead letter
    (WARNING) with the error, a cancellation (INFO), a success (INFO in text logs, else DEBUG)."""
    narrate = logger.isEnabledFor(_success_level)
    for finish in finishes:
        run = finish.run
        if finish.status == "succeeded":
            if narrate:
                extra = run_fields(run, worker_id)
                logger.log(
                    _success_level,
                    "run %s of %s succeeded (attempt %d)",
                    run.run_id,
                    run.name,
                    run.attempt,
                    extra=extra,
                )
            continue
        extra = run_fields(run, worker_id)
        if finish.status == "cancelled":
            logger.info("run %s of %s cancelled", run.run_id, run.name, extra=extra)
            continue
        extra["error_type"] = finish.error_type
        extra["error_message"] = finish.error_message
        extra["error_traceback"] = finish.error_traceback
        if finish.retry_delay is not None:
            logger.info(
                "run %s of %s failed (%s); attempt %d follows in %.1f s",
                run.run_id,
                run.name,
                finish.reason,
                run.attempt + 1,
                finish.retry_delay,
                extra=extra,
            )
        else:
            logger.warning(
                "task %s (%s) dead-lettered after attempt %d (%s)",
                run.task_id,
                run.name,
                run.attempt,
                finish.reason,
                extra=extra,
            )


def log_lost(logger: logging.Logger, lost_runs: Sequence[LostRun]) -> None:
    """The maintenance loop's lines about runs whose lease expired (WARNING): what happens next,
    with the task's ids and trace id, so the line joins the lines its worker wrote before it
    stopped. The worker id is left to the process writing the line (the reaper)."""
    for lost in lost_runs:
        extra = {
            "trace_id": lost.trace_id,
            "task_id": lost.task_id,
            "run_id": lost.run_id,
            "attempt": lost.attempt,
            "queue": lost.queue,
            "task_type": lost.task_name,
            "error_type": "LeaseExpired",
            "error_message": "the worker stopped renewing its lease (crashed, killed or frozen)",
        }
        if lost.outcome == "dead_letter":
            logger.warning(
                "task %s (%s) dead-lettered after attempt %d (lost: poison budget spent)",
                lost.task_id,
                lost.task_name,
                lost.attempt,
                extra=extra,
            )
        elif lost.outcome == "cancelled":
            logger.warning(
                "run %s of %s lost (lease expired); the task was cancelled",
                lost.run_id,
                lost.task_name,
                extra=extra,
            )
        elif not lost.charged:
            logger.warning(
                "run %s of %s lost (lease expired); attempt %d follows and runs alone (its "
                "worker held other runs too: not charged to the poison budget)",
                lost.run_id,
                lost.task_name,
                lost.attempt + 1,
                extra=extra,
            )
        else:
            logger.warning(
                "run %s of %s lost (lease expired); attempt %d follows",
                lost.run_id,
                lost.task_name,
                lost.attempt + 1,
                extra=extra,
            )


class RateLimitedLog:
    """At most one line per key per ``interval`` seconds, for lines any producer can cause
    (a garbage queue entry, a strategy returning absurd delays): the first line of a key is
    written at once, later ones within the interval are counted, and the next line written
    for that key says how many were suppressed. Thread-safe; keys are kept for the process's
    life, so use few distinct keys (a queue name and a kind, not a run id)."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._state: dict[Any, tuple[float, int]] = {}

    def allow(self, key: Any) -> int | None:
        """None when a line for ``key`` must be suppressed now; otherwise how many lines of
        ``key`` were suppressed since the last one written (0 for the first)."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._state.get(key, (-self.interval - 1.0, 0))
            if now - last < self.interval:
                self._state[key] = (last, suppressed + 1)
                return None
            self._state[key] = (now, 0)
            return suppressed

    def log(
        self,
        logger: logging.Logger,
        level: int,
        key: Any,
        msg: str,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        """Write ``msg % args`` unless rate-limited; True if it was written."""
        suppressed = self.allow(key)
        if suppressed is None:
            return False
        if suppressed:
            msg = f"{msg} ({suppressed} more like it suppressed since the last one)"
        logger.log(level, msg, *args, **kwargs)
        return True


def set_process_field(name: str, value: Any) -> None:
    """Stamp every later line of this process with ``name`` (e.g. ``worker_id``)."""
    _process_fields[name] = str(value)


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ids ``record`` is about, as plain JSON values; unknown ones are left out.

    A record that names its run (``extra`` with ``run_id``) takes nothing from the context
    variables, which may still hold another run's ids on that thread.
    """
    found: dict[str, Any] = {}
    attrs = record.__dict__
    explicit = "run_id" in attrs
    running = None if explicit else current_run.get()
    for name in CONTEXT_FIELDS:
        value = attrs.get(name)
        if value is None and running is not None:
            run, worker_id = running
            value = worker_id if name == "worker_id" else _RUN_GETTERS[name](run)
        if value is None and name == "trace_id" and not explicit:
            value = current_trace_id.get()
        if value is None:
            value = _process_fields.get(name)
        if value is not None:
            found[name] = value if isinstance(value, int | str) else str(value)
    return found


_RUN_GETTERS = {
    "trace_id": lambda run: run.trace_id,
    "task_id": lambda run: run.task_id,
    "run_id": lambda run: run.run_id,
    "attempt": lambda run: run.attempt,
    "queue": lambda run: run.queue,
    "task_type": lambda run: run.name,
}


def _error(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any] | None:
    """``type``, ``message`` and ``traceback`` of the record's exception or error fields."""
    if record.exc_info and record.exc_info[0] is not None:
        exc_type, exc, _ = record.exc_info
        return {
            "type": exc_type.__qualname__
            if exc_type.__module__ == "builtins"
            else f"{exc_type.__module__}.{exc_type.__qualname__}",
            "message": str(exc),
            "traceback": formatter.formatException(record.exc_info),
        }
    error_type = record.__dict__.get("error_type")
    if error_type is None:
        return None
    return {
        "type": error_type,
        "message": record.__dict__.get("error_message"),
        "traceback": record.__dict__.get("error_traceback"),
    }


def _utc_timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The line for ``record``."""
        data: dict[str, Any] = {
            "timestamp": _utc_timestamp(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(context_fields(record))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                data[key] = value
        error = _error(record, self)
        if error is not None:
            data["error"] = error
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message [ids]`` and the traceback, for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        """ISO 8601 in UTC, like the JSON lines."""
        return _utc_timestamp(record.created)

    def format(self, record: logging.LogRecord) -> str:
        """The line (and traceback) for ``record``."""
        text = super().format(record)
        fields = context_fields(record)
        if fields:
            ids = " ".join(f"{key}={value}" for key, value in fields.items())
            head, newline, rest = text.partition("\n")
            text = f"{head} [{ids}]{newline}{rest}"
        error = record.__dict__.get("error_traceback")
        if error and not record.exc_info:
            text += "\n" + str(error).rstrip("\n")
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass  # always the current sys.stderr


def configure_logging(
    settings: Settings | None,
    service: Service,
    *,
    log_format: LogFormat | None = None,
    level: str | None = None,
) -> None:
    """Send every log line of this process to standard error as JSON or text.

    ``log_format`` and ``level`` default to the settings' ``log_format`` and ``log_level``
    (``text`` and ``WARNING`` without settings); ``auto`` is resolved by :func:`resolve_format`.
    Calling it again replaces what an earlier call installed (the CLI configures quiet text
    first; a service then switches to its own).
    """
    global _success_level
    wanted = log_format or (settings.log_format if settings is not None else "text")
    chosen_format = resolve_format(wanted)
    _success_level = logging.INFO if chosen_format == "text" and service != "cli" else logging.DEBUG
    chosen_level = level or (settings.log_level if settings is not None else "WARNING")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(formatter_for(service, chosen_format))
    root.addHandler(handler)
    root.setLevel(chosen_level)


def formatter_for(service: Service, log_format: LogFormat) -> logging.Formatter:
    """The formatter :func:`configure_logging` installs (for an application's own handlers)."""
    return JsonFormatter(service) if log_format == "json" else TextFormatter()
