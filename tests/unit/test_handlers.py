"""The handler API: ``@taskrt.task``, payload validation, the context object and ``Retry``."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field

import taskrt
from taskrt.exceptions import (
    NonRetryableError,
    PayloadValidationError,
    Retry,
    TaskCancelled,
    TaskControl,
    TaskrtError,
    ValidationError,
)
from taskrt.handlers import TaskType, check_queue_name, check_task_name


def _noop(payload: Any) -> None:
    return None


def _context(**overrides: Any) -> taskrt.TaskContext:
    values: dict[str, Any] = {
        "task_id": uuid.uuid4(),
        "run_id": uuid.uuid4(),
        "attempt": 2,
        "task_name": "email.send",
        "queue": "mail",
    }
    values.update(overrides)
    return taskrt.TaskContext(**values)


class Email(BaseModel):
    to: str
    subject: str
    retries: int = Field(default=0, ge=0)
    send_at: datetime | None = None


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["email.send", "a.b", "acme.images.resize", "my_app.send-email", "A1.b2"]
)
def test_dotted_names_are_accepted(name: str) -> None:
    assert taskrt.task(name)(_noop).name == name


@pytest.mark.parametrize(
    "name",
    [
        "send",  # not dotted
        "",
        ".send",
        "email.",
        "email..send",
        "1email.send",
        "email.9send",
        "email send.now",
        "email/send.now",
        "émail.send",
        "x." + "a" * 200,  # too long
    ],
)
def test_bad_task_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        taskrt.task(name)(_noop)

    assert excinfo.value.errors[0]["loc"] == ["name"]
    assert repr(name) in str(excinfo.value)


def test_check_task_name_refuses_non_strings() -> None:
    with pytest.raises(ValidationError):
        check_task_name(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("queue", ["default", "high", "emails.v2", "low-prio_1", "q" * 64])
def test_good_queue_names(queue: str) -> None:
    assert taskrt.task("a.b", queue=queue)(_noop).queue == queue
    assert check_queue_name(queue) == queue


@pytest.mark.parametrize("queue", ["", "has space", "a/b", "{tag}", "q" * 65, "ünï"])
def test_bad_queue_names_are_refused(queue: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        taskrt.task("a.b", queue=queue)(_noop)

    assert excinfo.value.errors[0]["loc"] == ["queue"]


# --- declaration ----------------------------------------------------------------------------


def test_task_keeps_its_options() -> None:
    @taskrt.task(
        "email.send",
        payload=Email,
        queue="mail",
        max_retries=5,
        retry="fixed",
        retry_params={"delay": 3},
        timeout=30,
        priority=7,
    )
    def send(payload: Email, ctx: taskrt.TaskContext) -> None:
        """Send one email."""

    assert isinstance(send, TaskType)
    assert send.payload_model is Email
    assert send.queue == "mail"
    assert send.max_retries == 5
    assert send.retry == "fixed"
    assert dict(send.retry_params) == {"delay": 3}
    assert send.timeout == 30
    assert send.priority == 7
    assert send.description == "Send one email."


def test_defaults() -> None:
    declared = taskrt.task("a.b")(_noop)

    assert declared.queue is None  # the settings' default queue applies
    assert declared.max_retries == 3
    assert declared.retry == "exponential"
    assert dict(declared.retry_params) == {}
    assert declared.timeout is None
    assert declared.payload_model is None


def test_sync_and_async_handlers_are_told_apart() -> None:
    @taskrt.task("a.sync")
    def sync_handler(payload: Any) -> Any:
        return payload

    @taskrt.task("a.async")
    async def async_handler(payload: Any) -> Any:
        return payload

    assert sync_handler.is_async is False
    assert async_handler.is_async is True
    assert sync_handler.invoke(1, _context()) == 1
    assert asyncio.run(async_handler.invoke(2, _context())) == 2


def test_handler_with_only_a_payload_is_called_without_the_context() -> None:
    seen: list[tuple[Any, ...]] = []

    @taskrt.task("a.one")
    def handler(payload: Any) -> None:
        seen.append((payload,))

    handler.invoke({"x": 1}, _context())

    assert handler.takes_context is False
    assert seen == [({"x": 1},)]


def test_handler_with_payload_and_ctx_gets_the_context() -> None:
    seen: list[Any] = []

    @taskrt.task("a.two")
    def handler(payload: Any, ctx: taskrt.TaskContext) -> None:
        seen.append((payload, ctx))

    ctx = _context()
    handler.invoke("p", ctx)

    assert handler.takes_context is True
    assert seen == [("p", ctx)]


def test_keyword_only_parameters_do_not_count_as_the_context() -> None:
    @taskrt.task("a.kw")
    def handler(payload: Any, *, extra: int = 1) -> int:
        return extra

    assert handler.takes_context is False
    assert handler.invoke(None, _context()) == 1


@pytest.mark.parametrize("arity", [0, 3])
def test_handlers_must_take_one_or_two_positional_parameters(arity: int) -> None:
    functions = {0: lambda: None, 3: lambda payload, ctx, extra: None}

    with pytest.raises(TypeError, match=r"\(payload\) or \(payload, ctx\)"):
        taskrt.task("a.b")(functions[arity])


def test_a_task_type_is_callable_like_its_function() -> None:
    @taskrt.task("math.double")
    def double(payload: int) -> int:
        return payload * 2

    assert double(21) == 42


def test_payload_must_be_a_pydantic_model() -> None:
    with pytest.raises(TypeError, match="pydantic"):
        taskrt.task("a.b", payload=dict)(_noop)  # type: ignore[arg-type]


def test_negative_max_retries_and_non_positive_timeout_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        taskrt.task("a.b", max_retries=-1)(_noop)
    with pytest.raises(ValueError, match="timeout"):
        taskrt.task("a.b", timeout=0)(_noop)


# --- payloads -------------------------------------------------------------------------------


def test_payload_is_validated_against_the_model() -> None:
    send = taskrt.task("email.send", payload=Email)(_noop)

    stored = send.validate_payload(
        {"to": "a@example.com", "subject": "hi", "send_at": datetime(2030, 1, 2, tzinfo=UTC)}
    )

    # what is stored is JSON-ready: no datetime objects left
    assert stored == {
        "to": "a@example.com",
        "subject": "hi",
        "retries": 0,
        "send_at": "2030-01-02T00:00:00Z",
    }
    loaded = send.load_payload(stored)
    assert isinstance(loaded, Email)
    assert loaded.send_at == datetime(2030, 1, 2, tzinfo=UTC)


def test_a_model_instance_is_accepted_as_payload() -> None:
    send = taskrt.task("email.send", payload=Email)(_noop)

    assert send.validate_payload(Email(to="x", subject="y"))["to"] == "x"


def test_payload_error_names_the_field() -> None:
    send = taskrt.task("email.send", payload=Email)(_noop)

    with pytest.raises(PayloadValidationError) as excinfo:
        send.validate_payload({"to": "a@example.com", "retries": -1})

    locs = [error["loc"] for error in excinfo.value.errors]
    assert ["payload", "subject"] in locs
    assert ["payload", "retries"] in locs
    assert "payload.subject" in str(excinfo.value)
    assert "'email.send'" in str(excinfo.value)
    assert isinstance(excinfo.value, ValidationError)


def test_missing_payload_is_validated_as_empty_object() -> None:
    send = taskrt.task("email.send", payload=Email)(_noop)

    with pytest.raises(PayloadValidationError) as excinfo:
        send.validate_payload(None)

    assert ["payload", "to"] in [error["loc"] for error in excinfo.value.errors]


@pytest.mark.parametrize(
    "payload",
    [object(), {1, 2}, b"bytes", {"when": datetime(2030, 1, 1, tzinfo=UTC)}, math.nan, [math.inf]],
    ids=["object", "set", "bytes", "datetime", "nan", "inf"],
)
def test_non_json_payload_is_refused(payload: Any) -> None:
    echo = taskrt.task("a.echo")(_noop)

    with pytest.raises(PayloadValidationError) as excinfo:
        echo.validate_payload(payload)

    assert excinfo.value.errors[0]["loc"] == ["payload"]


@pytest.mark.parametrize("payload", [None, 1, "text", [1, "a", None], {"a": {"b": [1.5, True]}}])
def test_json_payload_without_a_model_passes_through(payload: Any) -> None:
    echo = taskrt.task("a.echo")(_noop)

    assert echo.validate_payload(payload) == payload
    assert echo.load_payload(payload) == payload


# --- context --------------------------------------------------------------------------------


def test_context_carries_the_run_ids() -> None:
    task_id, run_id, worker_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    ctx = _context(task_id=task_id, run_id=run_id, attempt=3, worker_id=worker_id)

    assert (ctx.task_id, ctx.run_id, ctx.attempt) == (task_id, run_id, 3)
    assert ctx.worker_id == worker_id


def test_context_logger_stamps_the_run_ids(caplog: pytest.LogCaptureFixture) -> None:
    ctx = _context(attempt=4, trace_id="trace-1")

    with caplog.at_level(logging.INFO):
        ctx.logger.info("working on %s", "it")
        ctx.logger.info("with more", extra={"step": "two"})

    first, second = caplog.records
    assert first.getMessage() == "working on it"
    assert first.task_id == str(ctx.task_id)  # type: ignore[attr-defined]
    assert first.run_id == str(ctx.run_id)  # type: ignore[attr-defined]
    assert first.attempt == 4  # type: ignore[attr-defined]
    assert first.task_type == "email.send"  # type: ignore[attr-defined]
    assert first.queue == "mail"  # type: ignore[attr-defined]
    assert first.trace_id == "trace-1"  # type: ignore[attr-defined]
    assert first.name == "taskrt.task.email.send"
    # extra fields given at the call are added, not put in place of the ids
    assert second.step == "two"  # type: ignore[attr-defined]
    assert second.run_id == str(ctx.run_id)  # type: ignore[attr-defined]


def test_cancellation_is_visible_to_the_handler() -> None:
    ctx = _context()

    assert ctx.cancel_requested is False
    ctx.raise_if_cancelled()  # nothing to raise yet
    assert ctx.wait_cancelled(0) is False

    ctx.request_cancel()

    assert ctx.cancel_requested is True
    assert ctx.wait_cancelled(0) is True
    with pytest.raises(TaskCancelled, match=str(ctx.task_id)):
        ctx.raise_if_cancelled()


def test_cancelling_one_context_leaves_others_alone() -> None:
    first, second = _context(), _context()

    first.request_cancel()

    assert second.cancel_requested is False


def test_time_left() -> None:
    assert _context().time_left() is None
    fresh = _context(timeout=60)
    left = fresh.time_left()
    assert left is not None
    assert 0 < left <= 60
    expired = _context(timeout=10, started_monotonic=time.monotonic() - 1000)
    assert expired.time_left() == 0.0


# --- Retry and errors -----------------------------------------------------------------------


def test_retry_carries_its_delay() -> None:
    assert Retry(delay=2.5).delay == 2.5
    assert Retry(0).delay == 0
    assert Retry().delay is None  # the strategy decides
    assert Retry(delay=1, reason="rate limited").reason == "rate limited"


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf])
def test_retry_refuses_a_delay_that_is_not_a_finite_non_negative_number(delay: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        Retry(delay=delay)


def test_retry_and_cancel_are_control_flow_not_errors() -> None:
    assert issubclass(Retry, TaskControl)
    assert issubclass(TaskCancelled, TaskControl)
    assert not issubclass(Retry, TaskrtError)
    assert not issubclass(TaskCancelled, TaskrtError)
    assert not issubclass(TaskControl, TaskrtError)

    def handles_taskrt_errors() -> str:
        try:
            raise Retry(delay=1)
        except TaskrtError:
            return "swallowed"

    # code that handles taskrt errors does not swallow a handler's request to retry
    with pytest.raises(Retry):
        handles_taskrt_errors()


def test_non_retryable_error_is_an_error() -> None:
    assert issubclass(NonRetryableError, TaskrtError)
    assert not issubclass(NonRetryableError, TaskControl)


def test_the_handler_api_is_reachable_from_the_top_package() -> None:
    assert taskrt.Retry is Retry
    assert taskrt.TaskCancelled is TaskCancelled
    assert taskrt.NonRetryableError is NonRetryableError
    assert taskrt.TaskType is TaskType
