"""Is the configured database ready? Every command that needs it asks here first.

On the embedded SQLite default the answer is made true: the file and its schema are created (or
migrated) on first use, so a newcomer's first ``taskrt enqueue`` works in an empty folder. A
server database is never changed behind the operator's back: a missing or old schema, a database
that does not exist, a server that does not answer or refuses the login each stop the command
with one line that names ``TASKRT_DATABASE_URL`` and says what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from taskrt.db import SCHEMA_REVISION
from taskrt.exceptions import ConfigurationError
from taskrt.settings import Settings

SETTING = "TASKRT_DATABASE_URL"


def prepare_database(settings: Settings, engine: Engine) -> bool:
    """Make sure ``engine``'s database can be used, or raise a one-line ConfigurationError.

    Returns True when it created or migrated the (SQLite) schema, False when it was ready.

    SQLite: checks that the file can be created and written, then creates or migrates the
    schema when it is missing or old.
    PostgreSQL: connects and checks the schema revision; never migrates.
    """
    if settings.is_sqlite:
        check_sqlite_path(settings.database_url)
    try:
        if stored_revision(engine) == SCHEMA_REVISION:
            return False  # the everyday case, without importing Alembic (about 10 MB and 0.3 s)
        with _quiet_alembic():
            from taskrt.db import migrate  # Alembic logs its set-up when first imported

            if migrate.is_up_to_date(engine):
                return False
            if settings.is_sqlite:
                migrate.upgrade(engine)
                return True
            current = migrate.current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise ConfigurationError(explain_connect_error(settings, exc)) from None
    where = _where(settings)
    if current is None:
        raise ConfigurationError(
            f"{SETTING}: the database {where} has no taskrt schema; "
            "create it with `taskrt db upgrade`"
        )
    raise ConfigurationError(
        f"{SETTING}: the schema of the database {where} is at revision {current}, not the "
        "newest this taskrt ships; migrate it with `taskrt db upgrade`"
    )


def stored_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database (Alembic's table, read with plain SQL), or
    None when it has none."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    # a service's INFO logging is already on; Alembic's set-up chatter is noise before it starts
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_sqlite_path(url: str) -> None:
    """Raise a clear error when a SQLite file cannot be created or written where ``url`` says."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser().absolute()
    folder = path.parent
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigurationError(
                f"{SETTING}: the SQLite file {path} cannot be read and written by this user; "
                "fix its permissions or point the setting at another file"
            )
        return
    if not folder.is_dir():
        raise ConfigurationError(
            f"{SETTING}: cannot create the SQLite file {path}: the folder {folder} does not "
            "exist; create it or point the setting at another file"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"{SETTING}: cannot create the SQLite file {path}: the folder {folder} is not "
            "writable by this user; point the setting at a writable place"
        )


def explain_connect_error(settings: Settings, exc: sa.exc.OperationalError) -> str:
    """One line saying why the database could not be reached and what to do."""
    text = str(exc.orig or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    where = _where(settings)
    if settings.is_sqlite:
        return f"{SETTING}: cannot open the SQLite database {where}: {first}"
    url = sa.engine.make_url(settings.database_url)
    lowered = text.lower()
    if "does not exist" in lowered and "database" in lowered:
        return (
            f"{SETTING}: the database {url.database!r} does not exist on {_server(url)}; "
            f"create it (`createdb {url.database}`) then run `taskrt db upgrade`, "
            "or point the setting at an existing database"
        )
    refused = ("password authentication failed", "no pg_hba.conf entry", "role ")
    if any(reason in lowered for reason in refused):
        return (
            f"{SETTING}: {_server(url)} refused the login of user {url.username!r}: "
            f"{_detail(first)}; fix the user or password in the setting"
        )
    return (
        f"{SETTING}: cannot reach PostgreSQL at {_server(url)}: {_detail(first)}; "
        "check that the server is running and the host and port in the setting"
    )


def _where(settings: Settings) -> str:
    url = sa.engine.make_url(settings.database_url)
    if settings.is_sqlite:
        return str(url.database or ":memory:")
    return f"{url.database!r} on {_server(url)}"


def _server(url: sa.engine.URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _detail(line: str) -> str:
    # libpq prefixes its messages with the whole connection attempt; the reason is at the end
    _, sep, reason = line.rpartition("failed: ")
    return (reason if sep else line).strip().removeprefix("FATAL:").strip()
