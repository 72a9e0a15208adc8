"""Every Redis key and channel taskrt uses, built in this one place (docs/reference/redis-keys.md).

All keys of one queue share the hash tag ``{name}``, so each Lua script touches one cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue."""

    ready: str
    delayed: str
    inflight: str
    leases: str
    dlq: str
    paused: str
    wake: str
    """Pub/sub channel (not a key): published when the queue gets work while idle."""


class Keyspace:
    """Builds key names under an optional deployment prefix."""

    def __init__(self, prefix: str = "") -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("a Redis prefix must not contain '{' or '}' (they set the hash tag)")
        self.prefix = prefix

    def queue(self, name: str) -> QueueKeys:
        """The keys of queue ``name``."""
        base = f"{self.prefix}queue:{{{name}}}"
        return QueueKeys(
            ready=f"{base}:ready",
            delayed=f"{base}:delayed",
            inflight=f"{base}:inflight",
            leases=f"{base}:leases",
            dlq=f"{base}:dlq",
            paused=f"{base}:paused",
            wake=f"{self.prefix}taskrt:wake:{name}",
        )

    @property
    def queues(self) -> str:
        """Set of every queue name ever dispatched to (a registry for listings and maintenance)."""
        return f"{self.prefix}taskrt:queues"

    @property
    def index_marker(self) -> str:
        """Holds the run id of the Redis server the queues were last rebuilt on: missing, or
        another server run's id, means Redis lost (or may have lost) what taskrt put there."""
        return f"{self.prefix}taskrt:index"

    def lock(self, name: str) -> str:
        """A short-lived lock key for maintenance work done by one process at a time."""
        return f"{self.prefix}taskrt:lock:{name}"

    def rate_limit(self, subject: str) -> str:
        """The HTTP API's token bucket of ``subject`` (``apikey:<name>``, ``ip:<address>``)."""
        return f"{self.prefix}taskrt:ratelimit:{subject}"

    def control_channel(self, instance: str) -> str:
        """A private channel used to wake one process's waiting fetcher."""
        return f"{self.prefix}taskrt:control:{instance}"
