"""What a JSON value must be for every store to hold it and every read to return it, and a
handler result that is not fails its run with a clear reason (issue 12, defects 2 and 3)."""

from __future__ import annotations

from datetime import datetime

from taskrt.jsonlimits import json_problems, nesting_depth, text_problem
from taskrt.outcomes import OutcomeBuilder
from taskrt.runtime import Runtime
from taskrt.service import EnqueueSpec, input_problems, run_at_problem
from taskrt.settings import Settings
from tests.unit.test_worker_parts import claimed


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_is_limited_without_recursion() -> None:
    assert json_problems(nested(64), ["p"], max_depth=64) == []
    (problem,) = json_problems(nested(65), ["p"], max_depth=64)
    assert problem["loc"][0] == "p"
    assert "TASKRT_MAX_JSON_DEPTH" in problem["msg"]
    (problem,) = json_problems(nested(200_000), ["p"], max_depth=64)  # no RecursionError
    assert nesting_depth(nested(200_000)) == 200_000


def test_lone_surrogates_nul_and_non_finite_numbers_are_found_with_their_path() -> None:
    value = {"a": ["ok", "\ud800"], "b\udfff": 1, "c": float("inf"), "d": "x\x00"}
    found = {tuple(p["loc"]) for p in json_problems(value, ["payload"], max_depth=64)}
    assert found == {("payload", "a", 1), ("payload",), ("payload", "c"), ("payload", "d")}
    only = json_problems(value, [], max_depth=64, unreadable_only=True)
    assert {tuple(p["loc"]) for p in only} == {("a", 1), ()}
    assert text_problem("fine ✓") is None


def test_the_service_names_every_field_no_store_can_hold() -> None:
    spec = EnqueueSpec(
        name="example.echo",
        payload=nested(70),
        dedup_key="k\ud800",
        trace_id="\x00",
        retry_params={"x": "\udc00"},
    )
    found = {p["loc"][1] for p in input_problems(spec, (3,), max_depth=64)}
    assert found == {"payload", "dedup_key", "trace_id", "retry_params"}


def test_run_at_must_stay_a_date_in_utc() -> None:
    assert run_at_problem(datetime.fromisoformat("9999-12-31T23:59:59-14:00")) is not None
    assert run_at_problem(datetime.fromisoformat("0001-01-01T00:00:00+14:00")) is not None
    assert run_at_problem(datetime.fromisoformat("9999-12-31T23:59:59+00:00")) is None
    assert run_at_problem(datetime(2030, 1, 1)) == "run_at must carry a time zone"


def test_a_result_too_deep_or_with_lone_surrogates_fails_its_run_with_a_reason() -> None:
    builder = OutcomeBuilder(
        Runtime.load(Settings()).registry, traceback_limit=300, max_json_depth=10
    )
    assert builder.succeeded(claimed(), nested(10)).status == "succeeded"
    for result in (nested(11), nested(100_000), {"text": "\ud800"}):
        finish = builder.succeeded(claimed(), result)
        assert finish.status == "failed"
        assert finish.reason == "unstorable_result"
        assert finish.next_run_id is None  # the same handler would return the same again
        assert "the handler's result cannot be stored" in (finish.error_message or "")
    # NUL characters stay the store's to judge (SQLite keeps them)
    assert builder.succeeded(claimed(), "a\x00b").status == "succeeded"
