"""taskrt's settings: one pydantic-settings class, read from ``TASKRT_*`` variables and a TOML file.

Precedence, highest first: explicit keyword arguments, environment variables, the TOML file named
by ``--config`` or ``TASKRT_CONFIG``, then the defaults below. ``TASKRT_DATABASE_URL`` falls back to
``DATABASE_URL`` and ``TASKRT_REDIS_URL`` to ``REDIS_URL``, as hosting platforms set those.

Every field is documented in ``docs/reference/settings.md``, which a test keeps in step with this
class (``python -m scripts.refdocs settings`` regenerates it). Plugins own their settings as
sections (:mod:`taskrt.settings_sections`), listed there and in ``taskrt config show`` too.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
)

from taskrt.exceptions import ConfigurationError
from taskrt.settings_fields import DEFAULT_DATABASE_URL, BaseFields
from taskrt.settings_sections import (
    PluginSettings,
    PluginValues,
    build_section,
    describe_problem,
    is_plugin_key,
    masked_section,
    refuse_unclaimed,
)
from taskrt.settings_values import (
    CommaList,
    mask_url,
    parse_rate,
    split_commas,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "CORE_PREFIXES",
    "DEFAULT_DATABASE_URL",
    "PluginSettings",
    "Settings",
    "load_settings",
    "mask_url",
    "parse_rate",
]

CONFIG_ENV_VAR = "TASKRT_CONFIG"

S = TypeVar("S", bound=PluginSettings)


class Settings(BaseFields):
    """Every knob of taskrt's core. Field descriptions become the settings reference.

    Plugins own their settings as sections (:mod:`taskrt.settings_sections`): ``section()``
    returns one, checked on first use; the runtime checks every loaded plugin's at start.
    """

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

    @field_validator("auth_backends", mode="before")
    @classmethod
    def _auth_backend_list(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator(
        "rate_limit_anonymous", "rate_limit_reader", "rate_limit_producer", "rate_limit_admin"
    )
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    _plugin_values: PluginValues = PrivateAttr(default_factory=PluginValues)
    _sections: dict[str, PluginSettings] = PrivateAttr(default_factory=dict)

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

    # --- plugin sections --------------------------------------------------------------------
    def section(self, name: str, model: type[S]) -> S:
        """The plugin settings section ``name`` (checked on first use, then kept)."""
        found = self._sections.get(name)
        if isinstance(found, model):
            return found
        built = build_section(name, model, self._plugin_values)
        self._sections[name] = built
        return built

    def adopt(self, sections: Mapping[str, type[PluginSettings]]) -> None:
        """Check the sections the loaded plugins registered, so a bad value or a key no loaded
        plugin takes stops the process at start (ConfigurationError naming the key)."""
        for name, model in sections.items():
            self.section(name, model)
        refuse_unclaimed(self._plugin_values, sections)

    @property
    def sections(self) -> dict[str, PluginSettings]:
        """The plugin settings sections checked so far, by name."""
        return dict(self._sections)

    def masked_sections(self) -> dict[str, Any]:
        """The plugin sections' values as plain data (``jwt_secret``, ...), secrets masked."""
        data: dict[str, Any] = {}
        for name, section in self._sections.items():
            data.update(masked_section(name, section))
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
        file_values = InitSettingsSource(settings_cls, init_kwargs=_CONFIG_FILE.values)
        return (init_settings, env_settings, file_values)


CORE_PREFIXES = {name.split("_", 1)[0] for name in Settings.model_fields}
"""First words of the core settings; no plugin section may be named like one."""


def _describe_problem(err: Any) -> str:
    """``name (TASKRT_NAME): what is wrong`` for one pydantic error (the name a user sets)."""
    fields = Settings.model_fields
    return describe_problem(err, lambda f: f"{f} (TASKRT_{f.upper()})" if f in fields else f)


class _ConfigFileSlot:
    """Hands the core keys of the TOML file to ``settings_customise_sources`` for one load."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}


_CONFIG_FILE = _ConfigFileSlot()


def _split_plugin_keys(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` split into core keys and plugin keys (see :mod:`taskrt.settings_sections`)."""
    core: dict[str, Any] = {}
    plugin: dict[str, Any] = {}
    for key, value in values.items():
        (plugin if is_plugin_key(key, CORE_PREFIXES) else core)[key] = value
    return core, plugin


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
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:  # tomllib.TOMLDecodeError is a ValueError
            raise ConfigurationError(f"cannot read config file {str(path)!r}: {exc}") from None
    core_overrides, plugin_overrides = _split_plugin_keys(overrides)
    _CONFIG_FILE.values, plugin_file = _split_plugin_keys(file_values)
    try:
        settings = Settings(**core_overrides)
    except PydanticValidationError as exc:
        problems = "; ".join(_describe_problem(err) for err in exc.errors())
        source = f" (config file {str(path)!r})" if path else ""
        raise ConfigurationError(f"invalid settings{source}: {problems}") from None
    finally:
        _CONFIG_FILE.values = {}
    settings._plugin_values = PluginValues(
        plugin_overrides, plugin_file, str(path) if plugin_file else None
    )
    return settings
