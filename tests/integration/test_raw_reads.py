"""The PostgreSQL reads that bypass SQLAlchemy (``api_key_by_prefix``, ``get_task``) hand back
the same records as the SQLAlchemy path, whatever the session's time zone."""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa

from taskrt.apikeys import create_api_key
from taskrt.client import Client
from taskrt.db.engine import create_engine
from taskrt.store import Store


def _sqlalchemy_store(url: str) -> Store:
    """A store on the same database whose reads take the SQLAlchemy path (as on SQLite)."""
    return Store(create_engine(url), raw_reads=False)


def test_a_task_read_through_psycopg_equals_the_sqlalchemy_read_in_any_time_zone(
    client: Client, pg_url: str
) -> None:
    engine = create_engine(pg_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        conn.execute(sa.text(f"ALTER DATABASE \"{database}\" SET timezone = 'Asia/Kolkata'"))
    engine.dispose()
    task_id = client.enqueue("example.echo", {"n": 1}).id
    fresh = Store(create_engine(pg_url))  # new sessions: they start in Asia/Kolkata
    try:
        with fresh.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "Asia/Kolkata"
        raw = fresh.get_task(task_id)
        reference = _sqlalchemy_store(pg_url).get_task(task_id)
        assert raw == reference
        assert raw.created_at.tzinfo == UTC
        assert raw.runs[0].enqueued_at.tzinfo == UTC
        assert raw.payload == {"n": 1}
    finally:
        fresh.dispose()


def test_an_api_key_read_through_psycopg_equals_the_sqlalchemy_read(
    client: Client, pg_url: str
) -> None:
    store = client.service.store
    record, _key = create_api_key(store, name="reader-key", role="reader")
    raw = store.api_key_by_prefix(record.prefix)
    assert raw == _sqlalchemy_store(pg_url).api_key_by_prefix(record.prefix)
    assert raw is not None
    assert raw.created_at.tzinfo == UTC
    assert store.api_key_by_prefix("00000000") is None
