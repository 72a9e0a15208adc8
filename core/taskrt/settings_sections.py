"""Settings that plugins own: each plugin registers a section (a pydantic-settings model).

A plugin implements the ``register_settings`` hook and calls ``register("jwt", JwtSettings)``
with a subclass of :class:`PluginSettings` whose ``env_prefix`` is ``TASKRT_JWT_``. Its field
``secret`` is then set exactly like a core setting: the variable ``TASKRT_JWT_SECRET``, the
top-level key ``jwt_secret`` of the TOML file, or the keyword ``jwt_secret`` given to
``load_settings``, with the same precedence (keyword, environment, file, default).

``load_settings`` runs before any plugin is loaded (the plugin allow- and block-lists are
settings), so it keeps the keywords and file keys that belong to no core setting aside, by
name: a key whose first word (``jwt`` of ``jwt_secret``) starts no core setting is a plugin's.
A key whose first word does start one (``worker_concurency``) is refused at once, as before.
The sections are checked when the runtime has loaded the plugins (see ``Settings.adopt``); a
key that no loaded plugin's section takes is then refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from taskrt.exceptions import ConfigurationError

ENV_PREFIX = "TASKRT_"
SECTION_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
PLUGIN_KEY_RE = re.compile(r"^([a-z][a-z0-9]*)_\w+$")


class PluginSettings(BaseSettings):
    """Base class of a plugin's settings section (see the module docstring).

    Subclasses set ``model_config = SettingsConfigDict(env_prefix="TASKRT_<NAME>_")`` and
    declare fields with descriptions, as the core settings do: the descriptions become the
    settings reference. Unknown keys of the section are refused by name.
    """

    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = InitSettingsSource(settings_cls, init_kwargs=_FILE_VALUES.values)
        return (init_settings, env_settings, file_values)


class _FileValuesSlot:
    """Hands one section's TOML values to ``settings_customise_sources`` for one build."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}


_FILE_VALUES = _FileValuesSlot()

S = TypeVar("S", bound=PluginSettings)
RegisterSettings = Callable[[str, type[PluginSettings]], None]
"""The ``register`` callable the ``register_settings`` hook receives."""


def env_name(section: str, name: str) -> str:
    """The environment variable of field ``name`` of section ``section``."""
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


def describe_problem(err: Any, label: Callable[[str], str]) -> str:
    """``name (TASKRT_NAME): what is wrong`` for one pydantic error (the name a user sets);
    ``label`` names the key the error's location starts with."""
    loc = [str(p) for p in err["loc"]]
    if loc:
        loc[0] = label(loc[0])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(loc) or 'settings'}: {message}"


@dataclass
class PluginValues:
    """What ``load_settings`` was given for plugin settings, by full key (``jwt_secret``):
    keyword overrides and keys of the TOML file (with the file's path, for messages)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    file: dict[str, Any] = field(default_factory=dict)
    file_path: str | None = None

    def given(self) -> Iterator[str]:
        """Every key given, overrides first."""
        yield from self.overrides
        yield from (key for key in self.file if key not in self.overrides)

    def of(self, section: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The overrides and file values of ``section``, keyed by field name."""
        prefix = f"{section}_"

        def strip(values: dict[str, Any]) -> dict[str, Any]:
            return {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}

        return strip(self.overrides), strip(self.file)


def is_plugin_key(key: str, core_prefixes: set[str]) -> bool:
    """True when ``key`` can only be a plugin's setting: a lower-case ``<section>_<field>`` whose
    section starts no core setting."""
    match = PLUGIN_KEY_RE.match(key)
    return match is not None and match.group(1) not in core_prefixes


def build_section(name: str, model: type[S], values: PluginValues) -> S:
    """Section ``name`` validated from its keywords, ``TASKRT_<NAME>_*`` and its file keys;
    ConfigurationError naming each bad key and its variable."""
    overrides, file_values = values.of(name)

    def label(key: str) -> str:
        known = key in model.model_fields
        return f"{name}_{key} ({env_name(name, key)})" if known else f"{name}_{key}"

    _FILE_VALUES.values = file_values
    try:
        return model(**overrides)
    except PydanticValidationError as exc:
        problems = "; ".join(describe_problem(err, label) for err in exc.errors())
        source = f" (config file {values.file_path!r})" if file_values else ""
        raise ConfigurationError(f"invalid settings{source}: {problems}") from None
    finally:
        _FILE_VALUES.values = {}


def collect_sections(manager: Any, core_prefixes: set[str]) -> dict[str, type[PluginSettings]]:
    """Every settings section the plugins of ``manager`` (a pluggy plugin manager) register
    through ``register_settings``; ConfigurationError for a section that cannot be one."""
    found: dict[str, type[PluginSettings]] = {}

    def register(name: str, model: type[PluginSettings]) -> None:
        if not isinstance(name, str) or not SECTION_NAME_RE.match(name):
            raise ConfigurationError(f"settings section {name!r}: use one lower-case word")
        if name in core_prefixes:
            raise ConfigurationError(f"settings section {name!r} would clash with core settings")
        if not (isinstance(model, type) and issubclass(model, PluginSettings)):
            raise ConfigurationError(f"settings section {name!r} is not a PluginSettings class")
        wanted = f"{ENV_PREFIX}{name.upper()}_"
        if model.model_config.get("env_prefix") != wanted:
            raise ConfigurationError(f"settings section {name!r} needs env_prefix {wanted!r}")
        if found.get(name, model) is not model:
            raise ConfigurationError(f"settings section {name!r} is registered twice")
        found[name] = model

    manager.hook.register_settings(register=register)
    return found


def refuse_unclaimed(values: PluginValues, sections: Mapping[str, Any]) -> None:
    """ConfigurationError naming every key given for a section no loaded plugin registered:
    unknown keys are an error, as for the core settings (a key of a registered section was
    checked by its model)."""
    unclaimed = [key for key in values.given() if key.split("_", 1)[0] not in sections]
    if unclaimed:
        in_file = [key for key in unclaimed if key in values.file]
        source = f" (config file {values.file_path!r})" if in_file else ""
        names = ", ".join(unclaimed)
        raise ConfigurationError(
            f"invalid settings{source}: {names}: unknown setting (no loaded plugin registers "
            "its section; is the plugin installed and enabled?)"
        )


def masked_section(name: str, section: PluginSettings) -> dict[str, Any]:
    """A section's values as plain data keyed ``<section>_<field>``, secrets masked."""
    data = section.model_dump(mode="json")
    for key, value in section.__dict__.items():
        if isinstance(value, SecretStr):
            data[key] = "***" if value.get_secret_value() else ""
    return {f"{name}_{key}": value for key, value in data.items()}
