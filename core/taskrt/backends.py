"""Which store and queue backend the settings select, and opening them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskrt.settings import Settings

if TYPE_CHECKING:
    from taskrt.queue.base import QueueBackend
    from taskrt.store import Store


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


def open_store(settings: Settings) -> Store:
    """The store on the configured database (connects lazily)."""
    from taskrt.db.engine import engine_from_settings
    from taskrt.store import Store

    # the Redis backend dispatches after the commit, so its runs need outbox rows
    return Store(engine_from_settings(settings), outbox=bool(settings.redis_url))


def open_queue_backend(settings: Settings, store: Store) -> QueueBackend:
    """The queue backend the settings select, over ``store``."""
    if settings.redis_url:
        from taskrt.queue.redis_backend import RedisQueueBackend

        return RedisQueueBackend.from_settings(store, settings)
    from taskrt.queue.sql_backend import SqlQueueBackend

    return SqlQueueBackend.from_settings(store, settings)
