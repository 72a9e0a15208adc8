"""The HTTP API's small parts, without services: request ids, cursors, payload checks, rates,
the in-process bucket, problem types and the Lua script's header."""

from __future__ import annotations

import pytest

from taskrt.api.errors import problem_type
from taskrt.api.paging import audit_cursor, decode_cursor, encode_cursor, task_cursor
from taskrt.api.ratelimit import LocalBuckets, Rate, RateLimiter, script_source
from taskrt.api.request_ids import request_id_from_headers
from taskrt.api.schemas import json_problems
from taskrt.exceptions import ValidationError
from taskrt.queue.keyspace import Keyspace
from taskrt.settings import load_settings, parse_rate

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-request-id": "abc-123"}, "abc-123"),
        ({"x-request-id": "abc-123", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, "abc-123"),
        ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, TRACE),
        ({"traceparent": f"01-{TRACE}-00f067aa0ba902b7-01-future"}, TRACE),
    ],
)
def test_request_id_sources(headers: dict[str, str], expected: str) -> None:
    assert request_id_from_headers(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-request-id": ""},
        {"x-request-id": "a" * 129},
        {"x-request-id": "spaces are bad"},
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},
        {"traceparent": f"ff-{TRACE}-00f067aa0ba902b7-01"},
        {"traceparent": f"00-{TRACE.upper()}-00f067aa0ba902b7-01"},
        {"traceparent": "garbage"},
    ],
)
def test_missing_or_malformed_ids_get_a_fresh_one(headers: dict[str, str]) -> None:
    made = request_id_from_headers(headers)
    assert len(made) == 32
    assert made != request_id_from_headers(headers)


def test_cursors_round_trip_and_keep_their_kind() -> None:
    cursor = encode_cursor("t", "01a22493-e488-71cd-a14d-7813ef380963")
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert str(task_cursor(cursor)) == "01a22493-e488-71cd-a14d-7813ef380963"
    assert decode_cursor("a", cursor) is None
    assert audit_cursor(encode_cursor("a", "42")) == 42
    for bad in ("!!", "", encode_cursor("a", "-1"), encode_cursor("a", "9" * 30)):
        with pytest.raises(ValidationError):
            audit_cursor(bad)
    with pytest.raises(ValidationError):
        task_cursor(encode_cursor("t", "not-a-uuid"))


def test_json_problems_finds_what_postgres_refuses() -> None:
    value = {"ok": [1, "fine", {"x": "nul\x00"}], "bad\x00key": 1, "n": float("nan")}
    found = {tuple(p["loc"]) for p in json_problems(value, ("body", "payload"))}
    assert found == {
        ("body", "payload", "ok", 2, "x"),
        ("body", "payload"),
        ("body", "payload", "n"),
    }
    assert json_problems({"a": [1, 2.5, "x", None, True]}, ()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("600/minute", (600, 60.0)), ("5/s", (5, 1.0)), ("2 / Hours", (2, 3600.0))],
)
def test_rates_parse(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected
    assert Rate.parse(text) == Rate(*expected)


@pytest.mark.parametrize("text", ["0/s", "5/ms", "5/day", "five/s", "5", "-1/s"])
def test_bad_rates_are_refused_when_settings_load(text: str) -> None:
    with pytest.raises(ValueError, match="N/second"):
        parse_rate(text)
    from taskrt.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="rate_limit_reader"):
        load_settings(rate_limit_reader=text)


def test_local_buckets_refill_and_forget_old_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    import taskrt.api.ratelimit as ratelimit

    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    buckets = LocalBuckets(max_callers=2)
    rate = Rate(2, 10.0)  # one token back every 5 s
    assert [buckets.take("a", rate).allowed for _ in range(3)] == [True, True, False]
    assert buckets.take("a", rate).retry_after == pytest.approx(5.0)
    now[0] += 5
    assert buckets.take("a", rate).allowed
    buckets.take("b", rate)
    buckets.take("c", rate)  # "a" is the least recently seen: forgotten, so it starts full
    assert [buckets.take("a", rate).allowed for _ in range(2)] == [True, True]


def test_without_redis_the_limiter_uses_its_fallback() -> None:
    limiter = RateLimiter(load_settings(rate_limit_reader="1/minute"), None, Keyspace("p:"))
    assert limiter.take("x", Rate(1, 60)).source == "local"


def test_rate_limit_keys_live_under_the_prefix() -> None:
    assert Keyspace("dep1:").rate_limit("apikey:ci") == "dep1:taskrt:ratelimit:apikey:ci"


def test_the_lua_script_documents_its_keys_argv_and_returns() -> None:
    source = script_source()
    for marker in ("KEYS[1]", "ARGV[1]", "ARGV[2]", "Returns:"):
        assert marker in source.split("local ", 1)[0]
    assert "redis.call('TIME')" in source


def test_problem_types_name_the_status() -> None:
    assert problem_type(429) == "urn:taskrt:problem:rate-limited"
    assert problem_type(418) == "urn:taskrt:problem:http-418"


def test_the_http_reference_names_every_operation_and_its_role() -> None:
    from pathlib import Path

    from taskrt.api import openapi_document

    text = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "http-api.md").read_text()
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            assert f"### `{method.upper()} {path}`" in text
            if "x-taskrt-role" in operation:
                assert f"Least role: `{operation['x-taskrt-role']}`" in text
