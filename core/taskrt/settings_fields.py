"""The first half of the core settings' fields (storage, plugins, logging, metrics, tasks and
the worker), a base class of :class:`taskrt.settings.Settings`, which adds the rest."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskrt import limits
from taskrt.settings_values import (
    CommaList,
    check_database_url,
    check_duration,
    normalize_database_url,
    split_commas,
)

DEFAULT_DATABASE_URL = "sqlite:///taskrt.db"


class BaseFields(BaseSettings):
    """Storage, plugin, logging, metrics, task and worker settings (see ``Settings``)."""

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
    metrics_tenant_label: bool = Field(
        default=True,
        description=(
            "Metrics carry the tenant's name in their `tenant` label. Off, the label is empty, so "
            "every tenant's series add up into one and the cardinality is that of a single "
            "tenant (docs/how-to/tenants.md)."
        ),
    )

    # --- tasks ------------------------------------------------------------------------------
    default_queue: str = Field(
        default="default",
        pattern=limits.QUEUE_NAME_PATTERN,
        description="Queue for a task whose call and handler name none.",
    )
    tenant: str = Field(
        default="default",
        pattern=limits.TENANT_NAME_PATTERN,
        description=(
            "Tenant the command line and the Python client act in when `--tenant` (or "
            "`Client(tenant=...)`) names none. It must exist (`taskrt tenants create`)."
        ),
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
        le=limits.RETRY_DELAY_LIMIT,
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

    # --- retention (docs/how-to/retention.md) -----------------------------------------------
    retention_completed: str = Field(
        default="7d",
        description=(
            "How long a completed task, with its runs, is kept after it finished: a number "
            "followed by `d`, `h`, `m` or `s` (`7d`, `12h`, `30m`, `45s`); `0` keeps it "
            "forever. Workers' maintenance passes and `taskrt prune` delete older ones."
        ),
    )
    retention_failed: str = Field(
        default="30d",
        description=(
            "How long a failed (dead-lettered) task is kept after it finished (`0`: forever)."
        ),
    )
    retention_cancelled: str = Field(
        default="7d",
        description="How long a cancelled task is kept after it finished (`0`: forever).",
    )
    retention_audit: str = Field(
        default="365d", description="How long an audit-log row is kept (`0`: forever)."
    )
    retention_schedule_fires: str = Field(
        default="30d",
        description=(
            "How long the record of a fired schedule slot is kept after its fire time "
            "(`0`: forever)."
        ),
    )
    retention_batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description=(
            "Most tasks (or audit rows, or schedule fires) one pruning transaction deletes; "
            "small batches keep the locks short, so claims and finishes never wait long."
        ),
    )
    retention_interval: float = Field(
        default=60.0,
        ge=0,
        description=(
            "Seconds between a worker's looks for history to prune; one worker of the fleet "
            "prunes at a time, working off what is due before it waits again. 0 turns "
            "automatic pruning off (`taskrt prune` still works)."
        ),
    )
    retention_duty: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description=(
            "While automatic pruning works off a backlog, the share of its time it spends "
            "deleting: after each batch it sleeps so that deleting takes at most this share "
            "(1: no pauses). Keeps pruning from taking the machine from claims and finishes."
        ),
    )

    @field_validator(
        "retention_completed",
        "retention_failed",
        "retention_cancelled",
        "retention_audit",
        "retention_schedule_fires",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> str:
        return check_duration(value)

    @field_validator("plugins_load", "plugins_disable", "plugins_modules", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return split_commas(value)

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
