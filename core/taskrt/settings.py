"""taskrt's settings: one pydantic-settings class, read from ``TASKRT_*`` variables and a TOML file.

Precedence, highest first: explicit keyword arguments, environment variables, the TOML file named
by ``--config`` or ``TASKRT_CONFIG``, then the defaults below. ``TASKRT_DATABASE_URL`` falls back to
``DATABASE_URL`` and ``TASKRT_REDIS_URL`` to ``REDIS_URL``, as hosting platforms set those.

Every field is documented in ``docs/reference/settings.md``, which a test keeps in step with this
class (``python -m taskrt.docs settings`` regenerates it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from taskrt.exceptions import ConfigurationError

CONFIG_ENV_VAR = "TASKRT_CONFIG"
DEFAULT_DATABASE_URL = "sqlite:///taskrt.db"

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
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


class Settings(BaseSettings):
    """Every knob taskrt has. Field descriptions become the settings reference."""

    model_config = SettingsConfigDict(
        env_prefix="TASKRT_",
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
    )

    # --- storage ---------------------------------------------------------------------------
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("TASKRT_DATABASE_URL", "DATABASE_URL", "database_url"),
        description=(
            "SQLAlchemy URL of the database that keeps every task and run. `postgres://` and "
            "`postgresql://` URLs are mapped to the psycopg 3 driver. Falls back to "
            "`DATABASE_URL`; "
            "the default is a SQLite file `taskrt.db` in the working directory."
        ),
    )
    database_pool_size: int = Field(
        default=10, ge=1, description="Connections each process keeps open to PostgreSQL."
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TASKRT_REDIS_URL", "REDIS_URL", "redis_url"),
        description=(
            "Redis URL for the queues (`redis://host:6379/0`). Falls back to `REDIS_URL`. "
            "Unset: the queues live in the database."
        ),
    )
    redis_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_.:-]*$",
        description=(
            "Prefix put in front of every Redis key and channel taskrt uses, so several "
            "deployments can share one Redis server. A `:` is added when it does not end in "
            "one (`acme` becomes `acme:`, so keys read `acme:queue:{default}:ready`)."
        ),
    )

    # --- plugins ----------------------------------------------------------------------------
    plugins_load: CommaList | None = Field(
        default=None,
        description=(
            "Allow-list: load only these plugins (entry-point names or distribution names, "
            "comma-separated). Unset: load every installed plugin."
        ),
    )
    plugins_disable: CommaList = Field(
        default_factory=list,
        description=(
            "Block-list: never load these plugins (entry-point names or distribution names, "
            "comma-separated). Wins over `plugins_load`."
        ),
    )
    plugins_modules: CommaList = Field(
        default_factory=list,
        description=(
            "Modules imported as plugins besides the entry points (comma-separated import "
            "paths), for task types that live in an application instead of an installed "
            "distribution."
        ),
    )
    plugins_trace: bool = Field(
        default=False, description="Log every hook call with its arguments at INFO level."
    )

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level of log line written."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description=(
            "How the services (`taskrt worker`, `api`, `scheduler`, `dev`) write their log "
            "lines to standard error: `json`, one object per line with the ids of the task run "
            "a line is about (for log collectors); `text`, for a terminal, where a worker also "
            "writes a line per finished task; or `auto`, text when standard error is a terminal "
            "and JSON otherwise. Their `--log-format` option wins over it. The CLI's one-shot "
            "commands (`taskrt enqueue`, `taskrt queues`, ...) always write text."
        ),
    )

    # --- metrics ----------------------------------------------------------------------------
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description=(
            "Port on which `taskrt worker` and `taskrt scheduler` serve Prometheus metrics at "
            "`/metrics` (their `--metrics-port` wins over it). Unset or 0: none served. Each "
            "process needs its own port (e.g. supervisord's `--metrics-port "
            "91%(process_num)02d`). The HTTP API serves `/metrics` on its own port instead."
        ),
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description=(
            "Address the metrics port of workers and schedulers listens on. The default keeps "
            "it to the host; `0.0.0.0` lets a Prometheus server elsewhere scrape it."
        ),
    )
    metrics_queue_depth: bool = Field(
        default=False,
        description=(
            "Workers and schedulers also export `taskrt_queue_depth` (one queue-count query per "
            "scrape). The HTTP API always does; turn this on where no API runs."
        ),
    )

    # --- tasks ------------------------------------------------------------------------------
    default_queue: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Queue for a task whose call and handler name none.",
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=1, description="Largest payload, as JSON, a task may carry."
    )
    max_json_depth: int = Field(
        default=64,
        ge=1,
        le=200,
        description=(
            "Most arrays and objects a task's payload, retry parameters or handler result may "
            "nest. Deeper input is refused at every entry point (HTTP 422, CLI and client "
            "errors name the field); a handler result nested deeper fails its run. At most "
            "200: responses wrap a payload in a few more levels and JSON encoders stop at 255."
        ),
    )

    # --- worker -----------------------------------------------------------------------------
    worker_concurrency: int = Field(
        default=8, ge=1, le=10_000, description="Handlers one worker process runs at once."
    )
    lease_ttl: float = Field(
        default=30.0,
        gt=0.2,
        description=(
            "Seconds a fetched run stays leased to its worker without renewal; a worker that "
            "stops renewing loses its runs after this long."
        ),
    )
    heartbeat_interval: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds between a worker's heartbeats. Each beat also renews leases (at least three "
            "times per lease TTL) and picks up cancellation requests."
        ),
    )
    worker_offline_after: float = Field(
        default=60.0,
        gt=0,
        description="A worker silent for this many seconds is marked `offline`.",
    )
    shutdown_grace: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Seconds running tasks get to finish after SIGTERM before they are handed back."
        ),
    )
    timeout_grace: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description=(
            "Seconds an `async def` handler cancelled at its timeout gets to stop. Past that "
            "hard deadline its run is failed (reason `timeout`) and its slot written off, even "
            "if the coroutine swallowed the cancellation or blocks the event loop; the "
            "coroutine is abandoned."
        ),
    )
    loop_stall_after: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description=(
            "Seconds the worker's event loop may go without running before a WARNING names "
            "the task holding it (an `async def` handler that blocks, e.g. with time.sleep)."
        ),
    )
    unknown_task_delay: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description=(
            "Seconds a run waits before it can be fetched again after a worker that does not "
            "have its task type handed it back untouched (no attempt spent), so that workers "
            "that have the type take it and the same worker does not spin on it."
        ),
    )
    poison_budget: int = Field(
        default=3,
        ge=1,
        description=(
            "Lost runs (the worker died or stopped renewing) a task may have before it is "
            "dead-lettered with reason `lost`."
        ),
    )
    max_retry_delay: float = Field(
        default=30 * 86400.0,
        gt=0,
        le=10 * 365 * 86400.0,
        allow_inf_nan=False,
        description=(
            "Longest delay, in seconds, before a retry (30 days by default, ten years at "
            "most). Whatever a retry strategy or `Retry(delay=...)` asks for (NaN, infinite, "
            "negative or too large) is brought into [0, this]; the worker logs a warning, at "
            "most once a minute per strategy, when it had to."
        ),
    )
    worker_prefetch: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description=(
            "Runs a worker claims ahead of its free slots; they wait, in fetch order, for a "
            "slot and start the moment one frees, so slots stay busy between fetches. Unset: "
            "as many as the concurrency. 0 turns prefetching off (then a newly queued "
            "high-priority task never waits behind prefetched lower-priority ones)."
        ),
    )
    fetch_batch: int = Field(
        default=32, ge=1, le=1000, description="Most runs a worker fetches in one call."
    )
    maintenance_interval: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Seconds between maintenance passes (promote delayed runs, reap expired leases, "
            "relay the outbox) in each worker."
        ),
    )
    reconcile_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between full reconciliations of the queues against the database.",
    )
    outbox_grace: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Seconds an outbox row may wait for its producer's own dispatch before the relay "
            "dispatches it."
        ),
    )
    traceback_limit: int = Field(
        default=8000, ge=0, description="Characters of a failed run's traceback that are stored."
    )

    # --- scheduler ------------------------------------------------------------------------
    scheduler_tick: float = Field(
        default=0.25,
        gt=0,
        le=5,
        description=(
            "Longest a scheduler sleeps between looks at the schedules; schedule changes take "
            "effect within one tick, and a slot fires within one tick of its due time."
        ),
    )
    scheduler_misfire_grace: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Seconds a slot may be overdue and still fire as usual; older slots are missed "
            "and handled by the schedule's misfire policy (skip, coalesce, all)."
        ),
    )
    scheduler_misfire_cap: int = Field(
        default=100,
        ge=1,
        description="Most missed slots one schedule with the `all` policy fires at once.",
    )

    # --- http api ---------------------------------------------------------------------------
    api_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description=(
            "Largest request body the HTTP API accepts, in bytes. A larger `Content-Length` is "
            "answered with 413 at once; a chunked body is counted as it arrives and refused as "
            "soon as it passes the limit, so the API never reads a whole oversized body."
        ),
    )
    api_header_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a client of `taskrt api` has to send a request's line and headers, counted "
            "from the connection (or the end of the previous response); a slower client is "
            "disconnected, so slowloris clients cannot hold connections open."
        ),
    )
    api_body_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds a client of `taskrt api` has to send a request's whole body once its "
            "headers are in; a slower client is disconnected."
        ),
    )
    api_keepalive_timeout: int = Field(
        default=5,
        ge=1,
        description=(
            "Seconds `taskrt api` keeps an idle keep-alive connection open between requests."
        ),
    )
    rate_limit_enabled: bool = Field(
        default=True,
        description="Rate-limit the HTTP API's `/api/v1` routes (token buckets in Redis).",
    )
    rate_limit_anonymous: str = Field(
        default="60/minute",
        description=(
            "Requests per client IP for calls without valid credentials (they are answered 401, "
            "and this keeps guessing keys slow). Written `N/second`, `N/minute` or `N/hour` "
            "(`s`, `m`, `h` also work): a bucket of N tokens refilled evenly over the period."
        ),
    )
    rate_limit_reader: str = Field(
        default="1200/minute", description="Requests per identity holding the `reader` role."
    )
    rate_limit_producer: str = Field(
        default="1200/minute", description="Requests per identity holding the `producer` role."
    )
    rate_limit_admin: str = Field(
        default="1200/minute", description="Requests per identity holding the `admin` role."
    )
    rate_limit_fallback: Literal["local", "open", "closed"] = Field(
        default="local",
        description=(
            "What the rate limiter does while Redis does not answer (or when no Redis is "
            "configured): `local` keeps limiting with a bucket in each API process (the limit "
            "then holds per process, not across processes), `open` lets every request through, "
            "`closed` answers 503. Each switch to and from the fallback is logged."
        ),
    )

    # --- auth -------------------------------------------------------------------------------
    auth_backends: CommaList = Field(
        default_factory=lambda: ["apikey"],
        description=(
            "Auth backends the HTTP API asks, in order (comma-separated names registered through "
            "`register_auth_backends`, e.g. `apikey,jwt`). The first that recognises the "
            "credentials decides."
        ),
    )
    auth_disabled: bool = Field(
        default=False,
        description=(
            "Turn authentication off: every HTTP request acts as an anonymous admin. Only for "
            "local experiments; the API logs a warning at every start while it is set."
        ),
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Shared secret of the `jwt` auth backend: tokens must be signed with HS256 and this "
            "secret. Give this or `jwt_public_key`, not both."
        ),
    )
    jwt_public_key: str | None = Field(
        default=None,
        description=(
            "PEM public key (the text, or the path of a file holding it) of the `jwt` auth "
            "backend: tokens must be signed with RS256 and the matching private key."
        ),
    )
    jwt_issuer: str | None = Field(
        default=None, description="When set, a token's `iss` claim must equal it."
    )
    jwt_audience: str | None = Field(
        default=None,
        description=(
            "When set, a token's `aud` claim must contain it; when unset, a token carrying an "
            "`aud` claim is refused."
        ),
    )
    jwt_max_lifetime: float | None = Field(
        default=None,
        gt=0,
        description=(
            "When set, the `jwt` backend refuses tokens meant to live longer than this many "
            "seconds: `exp - iat`, or `exp - now` for a token without `iat` (so a stolen "
            "long-lived token cannot be used). Unset: no limit beyond `exp` itself."
        ),
    )
    jwt_role_claim: str = Field(
        default="role",
        min_length=1,
        description=(
            "Claim holding the caller's role (`reader`, `producer` or `admin`). The subject "
            "comes from `sub`; `exp` is always required."
        ),
    )

    @field_validator("plugins_load", "plugins_disable", "plugins_modules", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("auth_backends", mode="before")
    @classmethod
    def _auth_backend_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator(
        "rate_limit_anonymous", "rate_limit_reader", "rate_limit_producer", "rate_limit_admin"
    )
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return check_database_url(normalize_database_url(value))

    @field_validator("redis_prefix")
    @classmethod
    def _prefix_separator(cls, value: str) -> str:
        return value if not value or value.endswith(":") else value + ":"

    @field_validator("redis_url")
    @classmethod
    def _blank_redis_is_unset(cls, value: str | None) -> str | None:
        return value or None

    # --- derived ----------------------------------------------------------------------------
    @property
    def is_sqlite(self) -> bool:
        """True when the database is a SQLite file (or memory)."""
        return self.database_url.startswith("sqlite")

    @property
    def is_postgresql(self) -> bool:
        """True when the database is PostgreSQL."""
        return self.database_url.startswith("postgresql")

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, with passwords and secrets masked."""
        data = self.model_dump(mode="json")
        for name, value in self.__dict__.items():
            if isinstance(value, SecretStr):
                data[name] = "***" if value.get_secret_value() else ""
        for name in ("database_url", "redis_url"):
            data[name] = mask_url(data[name])
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _CONFIG_FILE.get()
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def _describe_problem(err: Any) -> str:
    """``TASKRT_NAME: what is wrong`` for one pydantic error (the name a user sets)."""
    loc = [str(p) for p in err["loc"]]
    if loc and loc[0] in Settings.model_fields:
        loc[0] = f"{loc[0]} (TASKRT_{loc[0].upper()})"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(loc) or 'settings'}: {message}"


class _ConfigFileSlot:
    """Hands the TOML path to ``settings_customise_sources`` for the duration of one load."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def get(self) -> Path | None:
        return self.path


_CONFIG_FILE = _ConfigFileSlot()


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the effective settings.

    ``config_file`` (or ``TASKRT_CONFIG``) names an optional TOML file of top-level keys named
    like the fields (``database_url = "..."``). Keyword overrides beat everything else.
    """
    from pydantic import ValidationError as PydanticValidationError

    path_text = config_file if config_file is not None else os.environ.get(CONFIG_ENV_VAR)
    path = Path(path_text) if path_text else None
    if path is not None and not path.is_file():
        raise ConfigurationError(f"config file {str(path)!r} does not exist or is not a file")
    _CONFIG_FILE.path = path
    try:
        return Settings(**overrides)
    except PydanticValidationError as exc:
        problems = "; ".join(_describe_problem(err) for err in exc.errors())
        source = f" (config file {str(path)!r})" if path else ""
        raise ConfigurationError(f"invalid settings{source}: {problems}") from None
    except ValueError as exc:  # a TOML syntax error surfaces as tomllib.TOMLDecodeError
        raise ConfigurationError(f"cannot read config file {str(path)!r}: {exc}") from None
    finally:
        _CONFIG_FILE.path = None
