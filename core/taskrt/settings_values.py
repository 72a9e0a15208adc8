"""How setting values are read and shown: comma lists, rates, durations, database URLs and
masked URLs.

Plain functions without state, shared by the core :class:`~taskrt.settings.Settings` and the
settings sections plugins register.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import NoDecode

CommaList = Annotated[list[str], NoDecode]


def split_commas(value: Any) -> Any:
    """Accept ``"a,b"`` from the environment as well as a real list from TOML or code."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_RATE_RE = re.compile(
    r"^\s*(\d+)\s*/\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?)\s*$", re.IGNORECASE
)
_PERIOD_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> tuple[int, float]:
    """``"600/minute"`` -> ``(600, 60.0)``: requests allowed and the period they refill over."""
    match = _RATE_RE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(
            f"rate {text!r} is not N/second, N/minute or N/hour with N >= 1 (e.g. 600/minute)"
        )
    return int(match.group(1)), _PERIOD_SECONDS[match.group(2)[0].lower()]


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h|m|s)?\s*$", re.IGNORECASE)
_DURATION_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """``"7d"`` -> ``604800.0``: a number of days (``d``), hours (``h``), minutes (``m``) or
    seconds (``s``, also a bare number). ``"0"`` is 0.0, which retention reads as "forever"."""
    match = _DURATION_RE.match(str(text))
    if match is None:
        raise ValueError(
            f"duration {text!r} is not a number followed by d, h, m or s (e.g. 7d, 12h, 30m, "
            "45s; 0 keeps forever)"
        )
    return float(match.group(1)) * _DURATION_SECONDS[(match.group(2) or "s").lower()]


def check_duration(value: Any) -> str:
    """A duration setting's value, checked by :func:`parse_duration` and kept as written."""
    text = str(value).strip()
    parse_duration(text)
    return text


def normalize_database_url(url: str) -> str:
    """Map the URL forms hosting platforms hand out to the psycopg 3 driver SQLAlchemy needs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


SUPPORTED_DATABASES = (
    "PostgreSQL (postgresql://user@host:5432/dbname) or SQLite (sqlite:///taskrt.db)"
)


def check_database_url(url: str) -> str:
    """Refuse a database URL taskrt cannot use, saying which forms it takes."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(
            f"{mask_url(url)!r} is not a database URL; taskrt takes {SUPPORTED_DATABASES}"
        ) from None
    if parsed.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise ValueError(
            f"unsupported database {parsed.drivername!r}; taskrt runs on {SUPPORTED_DATABASES}"
        )
    return url


def mask_url(url: str | None) -> str | None:
    """Return ``url`` with any password replaced by ``***``, for display."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # Split the raw netloc rather than rebuild it from hostname/port, which would drop the
    # brackets of an IPv6 address ("[::1]:5432").
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
