"""Which store and queue backend the settings select, and why."""

from __future__ import annotations

from taskrt.settings import Settings


def describe_backend(settings: Settings) -> dict[str, str]:
    """Name the store and queue backends in use and the reason for the choice."""
    store = "postgresql" if settings.is_postgresql else "sqlite" if settings.is_sqlite else "sql"
    if settings.redis_url:
        return {"store": store, "queue": "redis", "reason": "TASKRT_REDIS_URL is set"}
    return {
        "store": store,
        "queue": f"sql ({store})",
        "reason": "no Redis URL is set, so the queues live in the database",
    }
