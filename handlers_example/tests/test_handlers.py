"""Tests of the example handler package: copy these along with the package.

A task type is callable like the function it wraps, so most tests just call it. The last tests
check that taskrt finds the package through its entry point, exactly as a worker does; they need
the package installed (``pip install -e './handlers_example[test]'``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pydantic
import pytest

import taskrt
from taskrt.exceptions import PayloadValidationError
from taskrt.retry import Failure
from taskrt.runtime import Runtime
from taskrt_handlers_example.plugin import (
    Fibonacci,
    FlakyError,
    FlakyPayload,
    SleepPayload,
    echo,
    flaky,
    sleep,
    word_count,
)

DISTRIBUTION = "taskrt-handlers-example"


def context(attempt: int = 1) -> taskrt.TaskContext:
    """The context a worker would pass for attempt ``attempt``."""
    return taskrt.TaskContext(
        task_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        attempt=attempt,
        task_name="example.test",
        queue="default",
    )


def failure(retries_made: int, max_retries: int) -> Failure:
    values: dict[str, Any] = {
        "attempt": retries_made + 1,
        "retries_made": retries_made,
        "max_retries": max_retries,
        "error_type": "FlakyError",
        "error_message": "boom",
    }
    fields = {f.name for f in dataclasses.fields(Failure)}  # works with older taskrt too
    return Failure(**{k: v for k, v in values.items() if k in fields})


# --- example.echo -----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, 7, "text", [1, 2], {"nested": {"a": [True]}}])
def test_echo_returns_its_payload(payload: Any) -> None:
    assert echo(payload) == payload
    assert echo.validate_payload(payload) == payload


def test_echo_is_a_plain_function_without_context() -> None:
    assert echo.name == "example.echo"
    assert echo.is_async is False
    assert echo.takes_context is False


# --- example.sleep ----------------------------------------------------------------------------


def test_sleep_is_async_and_reports_what_it_did() -> None:
    result = asyncio.run(sleep(SleepPayload(ms=1), context(attempt=2)))

    assert sleep.is_async is True
    assert result == {"slept_ms": 1, "attempt": 2}


def test_sleep_payload_defaults_and_limits() -> None:
    assert sleep.validate_payload({}) == {"ms": 100}
    with pytest.raises(PayloadValidationError) as excinfo:
        sleep.validate_payload({"ms": -5})
    assert excinfo.value.errors[0]["loc"] == ["payload", "ms"]


# --- example.flaky ----------------------------------------------------------------------------


def test_flaky_fails_until_the_attempt_it_succeeds_on() -> None:
    payload = FlakyPayload(succeed_on_attempt=3)

    for attempt in (1, 2):
        with pytest.raises(FlakyError, match=f"attempt {attempt}"):
            flaky(payload, context(attempt))
    assert flaky(payload, context(3)) == {"succeeded_on_attempt": 3}
    assert flaky(payload, context(4)) == {"succeeded_on_attempt": 4}


def test_flaky_with_probability_one_always_fails_and_zero_never() -> None:
    for attempt in range(1, 6):
        with pytest.raises(FlakyError):
            flaky(FlakyPayload(p=1.0), context(attempt))
        assert flaky(FlakyPayload(p=0.0), context(attempt)) == {"succeeded_on_attempt": attempt}


def test_flaky_without_settings_succeeds_at_once() -> None:
    assert flaky(FlakyPayload(), context(1)) == {"succeeded_on_attempt": 1}


def test_flaky_retries_with_the_fibonacci_strategy() -> None:
    assert flaky.retry == "example.fibonacci"
    assert flaky.max_retries == 3


def test_flaky_payload_limits() -> None:
    with pytest.raises(PayloadValidationError):
        flaky.validate_payload({"p": 1.5})
    with pytest.raises(PayloadValidationError):
        flaky.validate_payload({"succeed_on_attempt": 0})


# --- example.word_count -----------------------------------------------------------------------


def test_word_count_counts() -> None:
    text = "To be, or not to be:\nthat is the question."
    payload = word_count.load_payload(word_count.validate_payload({"text": text, "top": 2}))

    result = word_count(payload, context())

    assert result["lines"] == 2
    assert result["words"] == 10
    assert result["chars"] == len(text)
    assert result["top"] == [("to", 2), ("be", 2)]


def test_word_count_payload_needs_text() -> None:
    with pytest.raises(PayloadValidationError) as excinfo:
        word_count.validate_payload({"top": 3})

    assert ["payload", "text"] in [e["loc"] for e in excinfo.value.errors]
    assert "payload.text" in str(excinfo.value)


def test_word_count_payload_refuses_unknown_fields() -> None:
    with pytest.raises(PayloadValidationError) as excinfo:
        word_count.validate_payload({"text": "hi", "tpo": 3})

    assert ["payload", "tpo"] in [e["loc"] for e in excinfo.value.errors]


def test_word_count_payload_refuses_a_wrong_type() -> None:
    with pytest.raises(PayloadValidationError) as excinfo:
        word_count.validate_payload({"text": ["not", "a", "string"]})

    assert ["payload", "text"] in [e["loc"] for e in excinfo.value.errors]


def test_word_count_declares_its_queue_and_timeout() -> None:
    assert word_count.queue == "default"
    assert word_count.timeout == 60


# --- example.fibonacci ------------------------------------------------------------------------


def test_fibonacci_delays() -> None:
    strategy = Fibonacci(base=2)

    assert [strategy.delay(n) for n in range(7)] == [2, 2, 4, 6, 10, 16, 26]


def test_fibonacci_is_capped() -> None:
    strategy = Fibonacci(base=1, max_delay=5)

    assert [strategy.delay(n) for n in range(7)] == [1, 1, 2, 3, 5, 5, 5]
    assert strategy.delay(10_000) == 5


def test_fibonacci_gives_up_after_max_retries() -> None:
    strategy = Fibonacci()

    decisions = [strategy.decide(failure(n, max_retries=3)) for n in range(4)]

    assert [d.retry for d in decisions] == [True, True, True, False]
    assert [d.delay for d in decisions[:3]] == [1, 1, 2]


def test_fibonacci_refuses_bad_parameters() -> None:
    with pytest.raises(pydantic.ValidationError, match="base"):
        Fibonacci(base=-1)
    with pytest.raises(pydantic.ValidationError, match="bsae"):
        Fibonacci(bsae=1)  # type: ignore[call-arg]


# --- discovery through the entry point --------------------------------------------------------


@pytest.fixture
def runtime() -> Runtime:
    """taskrt's plugins as installed, ignoring any allow or block list of the developer's."""
    settings = taskrt.Settings(plugins_load=None, plugins_disable=[], plugins_modules=[])
    return Runtime.load(settings)


def test_taskrt_discovers_the_package_through_its_entry_point(runtime: Runtime) -> None:
    for name in ("example.echo", "example.sleep", "example.flaky", "example.word_count"):
        origin = runtime.registry.origin("task", name)
        assert origin is not None, f"{name} not registered: is the package installed?"
        assert origin.distribution == DISTRIBUTION
        assert origin.module == "taskrt_handlers_example.plugin"
    assert runtime.registry.task_type("example.echo") is echo


def test_taskrt_discovers_the_retry_strategy(runtime: Runtime) -> None:
    origin = runtime.registry.origin("retry", "example.fibonacci")
    assert origin is not None
    assert origin.distribution == DISTRIBUTION

    strategy = runtime.registry.retry_strategy("example.fibonacci", {"base": 3})
    assert strategy.decide(failure(2, max_retries=5)).delay == 6


def test_the_package_loads_without_failures(runtime: Runtime) -> None:
    assert [f for f in runtime.loaded.failures if f.distribution == DISTRIBUTION] == []
