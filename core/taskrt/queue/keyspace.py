"""Every Redis key and channel taskrt uses, built in this one place (docs/reference/redis-keys.md).

Queues are named by their *address* (:func:`taskrt.records.address`): the default tenant's is
the bare queue name, so its keys are ``queue:{emails}:ready`` and its wake channel
``taskrt:wake:emails`` (exactly those of a single-tenant deployment); any other tenant's is
``tenant/queue``: ``queue:{acme/emails}:ready``, ``taskrt:wake:acme/emails``. All keys of one
address share the hash tag ``{address}``, so each Lua script touches one cluster slot, and each
tenant's queue is a slot of its own.
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
        """The keys of the queue at address ``name`` (a bare name, or ``tenant/queue``)."""
        if name.count("/") > 1 or "{" in name or "}" in name:
            raise ValueError(f"{name!r} is not a queue address (queue or tenant/queue)")
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
        """Set of every queue address ever dispatched to (a registry for listings and
        maintenance): bare names for the default tenant, ``tenant/queue`` for the others."""
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
