"""Rate limiting: a token bucket per caller, kept in Redis by one Lua script.

The bucket of a caller holds ``N`` tokens and refills evenly over the period of its rate
(``600/minute``: 600 tokens, one back every 100 ms). Each request takes one; an empty bucket
answers 429 with ``Retry-After``. The script reads the clock with Redis ``TIME``, so every API
process sharing the Redis server (and ``TASKRT_REDIS_PREFIX``) shares each bucket.

Callers are identities (``apikey:<prefix>``, one bucket per key, ``jwt:<sub>``) with the limit
of their role, or client IPs with the anonymous limit when no identity was established.

When Redis does not answer, or none is configured, ``TASKRT_RATE_LIMIT_FALLBACK`` decides:
``local`` (default) keeps limiting with an in-process bucket per caller, so a single process
still protects itself but N processes allow up to N times the limit; ``open`` stops limiting;
``closed`` answers 503. Redis is tried again every few seconds; each switch is logged once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from importlib import resources

import redis
from fastapi import HTTPException

from taskrt.auth import Identity, Role
from taskrt.queue.keyspace import Keyspace
from taskrt.settings import Settings, parse_rate

log = logging.getLogger("taskrt.api.ratelimit")

RETRY_REDIS_AFTER = 5.0
"""Seconds the limiter stays on its fallback after Redis failed before trying Redis again."""
LOCAL_BUCKETS = 10_000
"""Most callers the in-process fallback remembers (least recently seen are forgotten first)."""


@cache
def script_source() -> str:
    """The text of ``ratelimit.lua``."""
    return resources.files("taskrt.api").joinpath("ratelimit.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Rate:
    """``capacity`` requests, refilled evenly over ``period`` seconds."""

    capacity: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``Rate.parse("600/minute")``."""
        capacity, period = parse_rate(text)
        return cls(capacity, period)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The limiter's answer for one request."""

    allowed: bool
    retry_after: float = 0.0
    """Seconds until the caller has a token again (0 when allowed)."""
    source: str = "redis"
    """Which bucket decided: ``redis``, ``local``, ``open`` or ``disabled``."""


class LocalBuckets:
    """Token buckets in this process (the fallback), on the monotonic clock."""

    def __init__(self, max_callers: int = LOCAL_BUCKETS) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_callers

    def take(self, subject: str, rate: Rate) -> Verdict:
        """Take a token from ``subject``'s bucket."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.pop(subject, (float(rate.capacity), now))
            tokens = min(rate.capacity, tokens + (now - stamp) * rate.capacity / rate.period)
            allowed = tokens >= 1
            retry = 0.0 if allowed else (1 - tokens) * rate.period / rate.capacity
            self._buckets[subject] = (tokens - 1 if allowed else tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return Verdict(allowed, retry, "local")


class RateLimiter:
    """Decides whether a request may go on; see the module docstring."""

    def __init__(self, settings: Settings, client: redis.Redis | None, keyspace: Keyspace) -> None:
        self.enabled = settings.rate_limit_enabled
        self.fallback = settings.rate_limit_fallback
        self.rates = {
            Role.READER: Rate.parse(settings.rate_limit_reader),
            Role.PRODUCER: Rate.parse(settings.rate_limit_producer),
            Role.ADMIN: Rate.parse(settings.rate_limit_admin),
            Role.OPERATOR: Rate.parse(settings.rate_limit_admin),  # operators: the admin rate
        }
        self.anonymous = Rate.parse(settings.rate_limit_anonymous)
        self.client = client
        self.keyspace = keyspace
        self.local = LocalBuckets()
        self._script = client.register_script(script_source()) if client is not None else None
        self._lock = threading.Lock()
        self._redis_retry_at = 0.0
        self._degraded = False
        if self.enabled and client is None:
            log.info(
                "no Redis is configured: rate limits use the %r fallback in each API process",
                self.fallback,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """A limiter on the configured Redis (short timeouts: a slow Redis must not stall
        every request), or on the fallback alone without one."""
        client = None
        if settings.redis_url:
            client = redis.Redis.from_url(
                settings.redis_url, socket_connect_timeout=1.0, socket_timeout=1.0
            )
        return cls(settings, client, Keyspace(settings.redis_prefix))

    # --- deciding -------------------------------------------------------------------------------
    def check(self, identity: Identity | None, client_ip: str | None) -> None:
        """Let the request through, or raise HTTPException 429 (or 503 when failing closed)."""
        if not self.enabled:
            return
        if identity is None or identity.backend == "disabled":
            # with auth off every caller is the same anonymous admin: limit per address instead
            subject = f"ip:{client_ip or 'unknown'}"
            rate = self.anonymous if identity is None else self.rates[identity.role]
        else:
            subject = identity.principal  # one bucket per credential, not per name
            rate = self.rates[identity.role]
        verdict = self.take(subject, rate)
        if not verdict.allowed:
            retry_after = max(1, math.ceil(verdict.retry_after))
            raise HTTPException(
                429,
                f"rate limit exceeded ({rate.capacity} requests per {rate.period:g} s); "
                f"retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    def take(self, subject: str, rate: Rate) -> Verdict:
        """Take a token for ``subject``: from Redis when it answers, else from the fallback."""
        if self._script is not None and time.monotonic() >= self._redis_retry_at:
            try:
                allowed, retry_ms, _remaining = self._script(
                    keys=[self.keyspace.rate_limit(subject)],
                    args=[rate.capacity, int(rate.period * 1000)],
                )
            except redis.RedisError as exc:
                self._redis_failed(exc)
            else:
                self._redis_answered()
                return Verdict(bool(allowed), int(retry_ms) / 1000, "redis")
        return self._fallback(subject, rate)

    def _fallback(self, subject: str, rate: Rate) -> Verdict:
        if self.fallback == "open":
            return Verdict(True, source="open")
        if self.fallback == "closed":
            raise HTTPException(
                503,
                "the rate limiter cannot reach Redis and is configured to fail closed",
                headers={"Retry-After": str(int(RETRY_REDIS_AFTER))},
            )
        return self.local.take(subject, rate)

    def _redis_failed(self, exc: Exception) -> None:
        with self._lock:
            self._redis_retry_at = time.monotonic() + RETRY_REDIS_AFTER
            first = not self._degraded
            self._degraded = True
        if first:
            log.warning(
                "rate limiter: Redis did not answer (%s); using the %r fallback until it does",
                exc,
                self.fallback,
            )

    def _redis_answered(self) -> None:
        if not self._degraded:
            return
        with self._lock:
            was, self._degraded = self._degraded, False
        if was:
            log.warning("rate limiter: Redis answers again; shared limits are back")

    def ping(self) -> None:
        """Raise redis.RedisError unless Redis answers (for readiness); no-op without Redis."""
        if self.client is not None:
            self.client.ping()

    def close(self) -> None:
        """Release the Redis connections."""
        if self.client is not None:
            self.client.close()
