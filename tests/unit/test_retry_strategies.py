"""Retry strategies, built the way the worker builds them: through the plugin registry."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

import taskrt_handlers_example.plugin as example_plugin
import taskrt_plugins.retry_strategies as builtin_strategies
from taskrt.exceptions import ValidationError
from taskrt.plugins import Registry
from taskrt.retry import (
    RETRY_DELAY_LIMIT,
    DelayStrategy,
    Failure,
    RetryDecision,
    RetryStrategy,
    bound_delay,
)
from taskrt.runtime import Runtime
from taskrt.settings import Settings


@pytest.fixture
def registry() -> Registry:
    runtime = Runtime.load(
        Settings(), plugins=[builtin_strategies, example_plugin], entry_points=False
    )
    return runtime.registry


def failure(retries_made: int, max_retries: int = 100) -> Failure:
    """The failure of the attempt after ``retries_made`` retries (no lost runs)."""
    values: dict[str, Any] = {
        "attempt": retries_made + 1,
        "retries_made": retries_made,
        "max_retries": max_retries,
        "error_type": "builtins.RuntimeError",
        "error_message": "boom",
    }
    # Failure.retries_made is a field now; older versions derived it from the attempt.
    fields = {f.name for f in dataclasses.fields(Failure)}
    return Failure(**{k: v for k, v in values.items() if k in fields})


def delays(strategy: RetryStrategy, count: int) -> list[float]:
    decisions = [strategy.decide(failure(n)) for n in range(count)]
    assert all(isinstance(d, RetryDecision) and d.retry for d in decisions)
    return [d.delay for d in decisions]


def test_registry_holds_the_builtin_and_example_strategies(registry: Registry) -> None:
    assert set(registry.retry_strategies) == {
        "exponential",
        "fixed",
        "linear",
        "none",
        "example.fibonacci",
    }


# --- exponential ----------------------------------------------------------------------------


def test_exponential_defaults_double_from_one_second(registry: Registry) -> None:
    assert delays(registry.retry_strategy("exponential"), 5) == [1, 2, 4, 8, 16]


def test_exponential_is_base_times_factor_to_the_retries_made(registry: Registry) -> None:
    strategy = registry.retry_strategy("exponential", {"base": 2, "factor": 3})

    assert delays(strategy, 4) == [2, 6, 18, 54]


def test_exponential_is_capped(registry: Registry) -> None:
    strategy = registry.retry_strategy("exponential", {"base": 10, "factor": 10, "max_delay": 500})

    assert delays(strategy, 5) == [10, 100, 500, 500, 500]


def test_exponential_survives_huge_retry_counts(registry: Registry) -> None:
    strategy = registry.retry_strategy("exponential", {"max_delay": 60})

    assert strategy.decide(failure(5000, max_retries=10_000)).delay == 60


def test_exponential_full_jitter_stays_within_zero_and_the_capped_delay(
    registry: Registry,
) -> None:
    strategy = registry.retry_strategy(
        "exponential", {"base": 10, "factor": 2, "max_delay": 50, "jitter": True}
    )

    first = [strategy.decide(failure(0)).delay for _ in range(300)]  # bound: 10
    capped = [strategy.decide(failure(6)).delay for _ in range(300)]  # bound: min(640, 50)

    assert all(0 <= d <= 10 for d in first)
    assert all(0 <= d <= 50 for d in capped)
    # full jitter spreads over the whole range, not a small band around the delay
    # (each bound fails with probability 2**-300)
    assert min(capped) < 25 < max(capped)
    assert len(set(capped)) > 1


# --- fixed, linear, none --------------------------------------------------------------------


def test_fixed(registry: Registry) -> None:
    assert delays(registry.retry_strategy("fixed", {"delay": 7}), 4) == [7, 7, 7, 7]
    assert delays(registry.retry_strategy("fixed"), 2) == [10, 10]


def test_linear(registry: Registry) -> None:
    strategy = registry.retry_strategy("linear", {"base": 2, "step": 3, "max_delay": 10})

    assert delays(strategy, 5) == [2, 5, 8, 10, 10]


def test_none_never_retries(registry: Registry) -> None:
    strategy = registry.retry_strategy("none")

    for retries_made in (0, 1, 5):
        decision = strategy.decide(failure(retries_made, max_retries=10))
        assert decision.retry is False
        assert decision.reason


# --- example.fibonacci, from a separately installed package ---------------------------------


def test_fibonacci_from_the_example_package(registry: Registry) -> None:
    strategy = registry.retry_strategy("example.fibonacci", {"base": 2})

    assert delays(strategy, 7) == [2, 2, 4, 6, 10, 16, 26]


def test_fibonacci_is_capped(registry: Registry) -> None:
    strategy = registry.retry_strategy("example.fibonacci", {"base": 1, "max_delay": 4})

    assert delays(strategy, 7) == [1, 1, 2, 3, 4, 4, 4]


# --- giving up ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("exponential", {}),
        ("exponential", {"jitter": True}),
        ("fixed", {"delay": 1}),
        ("linear", {}),
        ("example.fibonacci", {}),
    ],
)
def test_gives_up_once_max_retries_are_spent(
    registry: Registry, name: str, params: dict[str, Any]
) -> None:
    strategy = registry.retry_strategy(name, params)

    outcomes = [strategy.decide(failure(n, max_retries=3)).retry for n in range(5)]

    assert outcomes == [True, True, True, False, False]
    assert strategy.decide(failure(0, max_retries=0)).retry is False


def test_give_up_decision_has_no_delay_and_says_why() -> None:
    decision = RetryDecision.give_up()

    assert decision.retry is False
    assert decision.reason == "retries exhausted"


def test_retry_in_never_goes_negative() -> None:
    assert RetryDecision.retry_in(-3).delay == 0.0
    assert RetryDecision.retry_in(2).delay == 2.0


def test_a_delay_strategy_subclass_only_says_how_long() -> None:
    class Constant(DelayStrategy):
        def delay(self, retries_made: int) -> float:
            return 42.0

    assert Constant().decide(failure(0, max_retries=1)) == RetryDecision(retry=True, delay=42.0)
    assert Constant().decide(failure(1, max_retries=1)).retry is False


# --- bad parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("exponential", {"base": -1}, "base"),
        ("exponential", {"factor": 0.5}, "factor"),
        ("exponential", {"max_delay": "soon"}, "max_delay"),
        ("exponential", {"bsae": 2}, "bsae"),  # a typo is refused, not ignored
        ("fixed", {"delay": -1}, "delay"),
        ("linear", {"step": -2}, "step"),
        ("none", {"delay": 1}, "delay"),
        ("example.fibonacci", {"base": "x"}, "base"),
    ],
)
def test_bad_params_are_a_validation_error_naming_the_field(
    registry: Registry, name: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        registry.retry_strategy(name, params)

    assert ["retry_params", field] in [error["loc"] for error in excinfo.value.errors]
    assert field in str(excinfo.value)
    assert repr(name) in str(excinfo.value)


def test_unknown_strategy_is_a_validation_error_listing_the_known_ones(registry: Registry) -> None:
    with pytest.raises(ValidationError) as excinfo:
        registry.retry_strategy("exponentail")

    assert "exponentail" in str(excinfo.value)
    assert "exponential" in str(excinfo.value)
    assert excinfo.value.errors[0]["loc"] == ["retry"]


def test_a_factory_that_returns_no_strategy_is_a_validation_error() -> None:
    registry = Registry(retry_strategies={"broken": lambda **params: object()})

    with pytest.raises(ValidationError, match="broken"):
        registry.retry_strategy("broken")


def test_a_plain_function_factory_works() -> None:
    class Always:
        def __init__(self, seconds: float) -> None:
            self.seconds = seconds

        def decide(self, failure: Failure) -> RetryDecision:
            return RetryDecision.retry_in(self.seconds)

    registry = Registry(retry_strategies={"always": lambda seconds=1.0: Always(seconds)})

    assert registry.retry_strategy("always", {"seconds": 4}).decide(failure(9)).delay == 4


# --- every delay is bounded (issue 12, #1) ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("exponential", {"base": 1e308}, "base"),
        ("exponential", {"max_delay": float("inf")}, "max_delay"),
        ("exponential", {"base": float("nan")}, "base"),
        ("exponential", {"factor": 1e6}, "factor"),
        ("fixed", {"delay": 1e12}, "delay"),
        ("fixed", {"delay": float("nan")}, "delay"),
        ("linear", {"base": float("-inf")}, "base"),
        ("linear", {"step": 1e300}, "step"),
        ("linear", {"max_delay": 4e8}, "max_delay"),
    ],
)
def test_durations_must_be_finite_and_at_most_ten_years(
    registry: Registry, name: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        registry.retry_strategy(name, params)

    assert ["retry_params", field] in [error["loc"] for error in excinfo.value.errors]


def test_the_largest_accepted_parameters_give_storable_delays(registry: Registry) -> None:
    limit = RETRY_DELAY_LIMIT
    strategy = registry.retry_strategy(
        "exponential", {"base": limit, "factor": 1000, "max_delay": limit}
    )
    assert delays(strategy, 3) == [limit] * 3
    assert strategy.decide(failure(10**6, max_retries=10**7)).delay == limit


@pytest.mark.parametrize(
    ("given", "expected", "changed"),
    [
        (5.0, 5.0, False),
        (0.0, 0.0, False),
        (-1.0, 0.0, True),
        (float("-inf"), 0.0, True),
        (float("inf"), 100.0, True),
        (1e308, 100.0, True),
        (float("nan"), 100.0, True),
        ("soon", 100.0, True),
    ],
)
def test_bound_delay_brings_any_answer_into_range(
    given: Any, expected: float, changed: bool
) -> None:
    value, why = bound_delay(given, 100.0)
    assert value == expected
    assert (why is not None) is changed


def test_retry_in_keeps_nan_for_the_worker_to_bound() -> None:
    assert math.isnan(RetryDecision.retry_in(float("nan")).delay)
