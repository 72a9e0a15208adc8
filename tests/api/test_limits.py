"""Request body limit (413) and rate limits (429 with Retry-After), including what the limiter
does when Redis does not answer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import redis

from taskrt.queue.keyspace import Keyspace
from tests.api.conftest import Api
from tests.support import services
from tests.support.db import Db

pytestmark = pytest.mark.services

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_a_declared_length_over_the_limit_is_refused_at_once(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(api_max_body_bytes=2000)
    body = {"name": "example.echo", "payload": "x" * 1500}
    ok = api.client.post("/api/v1/tasks", json=body, headers=api.auth("producer"))
    assert ok.status_code == 201
    big = api.client.post(
        "/api/v1/tasks",
        json={**body, "payload": "x" * 2500},
        headers=api.auth("producer"),
    )
    assert big.status_code == 413
    assert big.json()["type"] == "urn:taskrt:problem:payload-too-large"
    assert "limit is 2000" in big.json()["detail"]
    assert big.headers["x-request-id"]


def test_a_chunked_body_is_counted_and_refused(make_api: Callable[..., Api]) -> None:
    api = make_api(api_max_body_bytes=10_000)

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "example.echo", "payload": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    response = api.client.post(
        "/api/v1/tasks",
        content=chunks(),
        headers={**api.auth("producer"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "larger than the limit of 10000" in response.json()["detail"]


def test_the_default_limit_is_one_mebibyte(api: Api) -> None:
    assert api.settings.api_max_body_bytes == 1024 * 1024
    response = api.client.post(
        "/api/v1/tasks/batch",
        content=b"x" * (1024 * 1024 + 1),
        headers={**api.auth("producer"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def _burst(api: Api, headers: dict[str, str], n: int) -> list[int]:
    return [api.client.get("/api/v1/tasks", headers=headers).status_code for _ in range(n)]


def test_a_burst_beyond_the_role_limit_gets_429_with_retry_after(
    make_api: Callable[..., Api], redis_prefix: str
) -> None:
    api = make_api(rate_limit_reader="3/minute", rate_limit_admin="5/minute")
    reader = api.auth("reader")
    assert _burst(api, reader, 4) == [200, 200, 200, 429]
    limited = api.client.get("/api/v1/tasks", headers=reader)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert limited.json()["type"] == "urn:taskrt:problem:rate-limited"
    # another identity has its own bucket, and the admin role its own limit
    assert _burst(api, api.auth("admin"), 6) == [200] * 5 + [429]
    assert _burst(api, {"X-API-Key": api.key("reader")}, 1) == [200]
    client = services.redis_client()
    try:
        prefix = api.keys["reader"].split("_")[1]  # buckets are per key, named by its prefix
        assert client.exists(Keyspace(redis_prefix).rate_limit(f"apikey:{prefix}"))
    finally:
        client.close()


def test_unauthenticated_requests_are_limited_per_client_address(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(rate_limit_anonymous="2/minute")
    statuses = [api.client.get("/api/v1/tasks").status_code for _ in range(3)]
    wrong = api.client.get("/api/v1/tasks", headers={"X-API-Key": "guess"})
    assert statuses == [401, 401, 429]
    assert wrong.status_code == 429
    # a real identity is not held back by its address's failures
    assert api.client.get("/api/v1/tasks", headers=api.auth("reader")).status_code == 200


def test_rate_limits_can_be_switched_off(make_api: Callable[..., Api]) -> None:
    api = make_api(rate_limit_reader="1/hour", rate_limit_enabled=False)
    assert _burst(api, api.auth("reader"), 5) == [200] * 5


def test_tokens_come_back_over_the_period(api: Api) -> None:
    import time

    from taskrt.api.ratelimit import Rate

    limiter = api.client.app.state.taskrt.limiter  # type: ignore[attr-defined]
    rate = Rate(2, 1.0)  # two tokens, one back every 500 ms
    verdicts = [limiter.take("test:refill", rate) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert all(v.source == "redis" for v in verdicts)
    assert 0.3 < verdicts[2].retry_after <= 0.5
    time.sleep(verdicts[2].retry_after + 0.05)
    assert limiter.take("test:refill", rate).allowed


# --- Redis down -------------------------------------------------------------------------------


def _api_without_redis(make_api: Callable[..., Api], fallback: str) -> Api:
    """The app whose Redis does not answer (routes that only read the database still work)."""
    return make_api(
        redis_url=DEAD_REDIS, rate_limit_reader="3/minute", rate_limit_fallback=fallback
    )


def test_redis_down_local_fallback_keeps_limiting_per_process(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    api = _api_without_redis(make_api, "local")
    with caplog.at_level(logging.WARNING, logger="taskrt.api.ratelimit"):
        assert _burst(api, api.auth("reader"), 4) == [200, 200, 200, 429]
    warnings = [r for r in caplog.records if "Redis did not answer" in r.getMessage()]
    assert len(warnings) == 1  # logged when it switched, not on every request


def test_redis_down_open_fallback_lets_requests_through(make_api: Callable[..., Api]) -> None:
    api = _api_without_redis(make_api, "open")
    assert _burst(api, api.auth("reader"), 6) == [200] * 6


def test_redis_down_closed_fallback_answers_503(make_api: Callable[..., Api]) -> None:
    api = _api_without_redis(make_api, "closed")
    response = api.client.get("/api/v1/tasks", headers=api.auth("reader"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"] == "urn:taskrt:problem:unavailable"


def test_readiness_reports_redis_down(make_api: Callable[..., Api]) -> None:
    api = _api_without_redis(make_api, "local")
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["errors"] == [{"loc": ["redis"], "msg": "did not answer"}]
    assert api.client.get("/healthz").status_code == 200


def test_a_write_that_needs_redis_answers_503_not_500(make_api: Callable[..., Api]) -> None:
    api = _api_without_redis(make_api, "open")
    response = api.client.post("/api/v1/queues/q/pause", headers=api.auth("admin"))
    assert response.status_code == 503
    assert "127.0.0.1:1" not in response.text


def test_the_limiter_goes_back_to_redis_when_it_answers_again(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import taskrt.api.ratelimit as ratelimit
    from taskrt.api.ratelimit import Rate

    limiter = api.client.app.state.taskrt.limiter  # type: ignore[attr-defined]
    monkeypatch.setattr(ratelimit, "RETRY_REDIS_AFTER", 0.0)
    real_script = limiter._script
    calls = {"n": 0}

    def flaky(**kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise redis.ConnectionError("gone for a moment")
        return real_script(**kwargs)

    monkeypatch.setattr(limiter, "_script", flaky)
    with caplog.at_level(logging.WARNING, logger="taskrt.api.ratelimit"):
        first = limiter.take("ip:1.2.3.4", Rate(5, 60))
        second = limiter.take("ip:1.2.3.4", Rate(5, 60))
    assert (first.source, second.source) == ("local", "redis")
    assert "answers again" in caplog.text


def test_tasks_are_still_created_while_redis_is_down(make_api: Callable[..., Api], db: Db) -> None:
    api = _api_without_redis(make_api, "local")
    response = api.client.post(
        "/api/v1/tasks", json={"name": "example.echo"}, headers=api.auth("producer")
    )
    assert response.status_code == 201
    # kept in the outbox until the relay can hand it to Redis
    assert db.scalar("SELECT count(*) FROM outbox") == 1
