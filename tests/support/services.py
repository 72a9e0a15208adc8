"""Throwaway PostgreSQL databases, Redis key prefixes and SQLite files for tests.

Each test gets its own database (cloned from a migrated template, so it costs one CREATE
DATABASE) and its own Redis key prefix, so tests never see each other's data or a developer's.
The servers come from TASKRT_TEST_PG_URL and TASKRT_TEST_REDIS_URL (defaults: the local ones).
A missing server is an error, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
import sqlalchemy as sa

from taskrt.db import migrate
from taskrt.db.engine import create_engine

PG_ADMIN_URL = os.environ.get(
    "TASKRT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TASKRT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def pg_url_for(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the test server."""
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not answering at {PG_ADMIN_URL}: {exc}. Start it (see README) or set "
            "TASKRT_TEST_PG_URL; tests that need it fail rather than skip."
        ) from exc


def create_database(name: str, template: str | None = None) -> str:
    """Create database ``name`` (from ``template`` if given) and return its URL."""
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url_for(name)


def drop_database(name: str) -> None:
    """Drop database ``name``, disconnecting anyone still using it."""
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_template(name: str) -> str:
    """Create a migrated template database ``name`` and return its name."""
    url = create_database(name)
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return name


@contextmanager
def cloned_database(template: str) -> Iterator[str]:
    """A fresh database cloned from ``template``; yields its URL, drops it afterwards."""
    name = f"taskrt_t_{uuid.uuid4().hex[:12]}"
    url = create_database(name, template=template)
    try:
        yield url
    finally:
        drop_database(name)


def redis_client() -> redis.Redis:
    """A client for the test Redis; raises a clear error if it does not answer."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"Redis is not answering at {REDIS_URL}: {exc}. Start it (see README) or set "
            "TASKRT_TEST_REDIS_URL; tests that need it fail rather than skip."
        ) from exc
    return client


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key starting with ``prefix``."""
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def sqlite_database(path: str) -> str:
    """Create and migrate a SQLite file at ``path``; return its URL."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url


def table_counts(url: str, *tables: str) -> dict[str, int]:
    """Row counts of ``tables`` in the database at ``url``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables
            }
    finally:
        engine.dispose()
