"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

JSONType = sa.JSON().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
"""JSON: JSONB on PostgreSQL, JSON text on SQLite."""

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""An auto-incrementing integer key (SQLite only auto-increments INTEGER PRIMARY KEY)."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp always handed back as an aware UTC datetime, also on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: taskrt stores aware UTC datetimes only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite may hand back text written by db_now()
            value = datetime.fromisoformat(value)
        stamp = cast(datetime, value)
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


class db_now(FunctionElement[datetime]):  # noqa: N801 - reads like the SQL function it renders
    """The database clock: ``statement_timestamp()`` on PostgreSQL, millisecond UTC on SQLite.

    Deadlines come from one clock per store (docs/concepts/lifecycle.md, "Which clock decides
    what").
    """

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now)
def _db_now_default(element: db_now, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(db_now, "postgresql")
def _db_now_postgresql(element: db_now, compiler: Any, **kw: Any) -> str:
    return "statement_timestamp()"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    # the same text form SQLAlchemy writes for DateTime on SQLite, so comparisons are textual-safe
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


class db_now_plus(FunctionElement[datetime]):  # noqa: N801 - reads like the SQL it renders
    """The database clock plus a number of seconds (a bound value or column expression)."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now_plus)
def _db_now_plus_default(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    raise NotImplementedError("db_now_plus is implemented for PostgreSQL and SQLite only")


@compiles(db_now_plus, "postgresql")
def _db_now_plus_postgresql(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    (seconds,) = list(element.clauses)
    return (
        "(statement_timestamp() + make_interval(secs => "
        f"CAST({compiler.process(seconds, **kw)} AS double precision)))"
    )


@compiles(db_now_plus, "sqlite")
def _db_now_plus_sqlite(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    (seconds,) = list(element.clauses)
    return (
        "strftime('%Y-%m-%d %H:%M:%f000', 'now', "
        f"printf('%+.3f seconds', {compiler.process(seconds, **kw)}))"
    )
