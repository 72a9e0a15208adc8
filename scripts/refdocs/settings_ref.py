"""The settings reference (``settings.md``): the core ``Settings`` fields and the settings
sections the built-in plugins register."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any

from taskrt.settings import PluginSettings

from .common import GENERATED_NOTE


def _type_name(tp: Any) -> str:
    """A readable name for a field annotation (``Annotated`` markers dropped, literals as str)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "None"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return "str" if all(isinstance(arg, str) for arg in args) else "literal"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(arg) for arg in args)}]"
    return str(getattr(tp, "__name__", tp))


def _literal_choices(tp: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` annotation (inside ``Optional`` too), else ``()``."""
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    for arg in typing.get_args(tp):
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    return ()


def _toml(value: Any) -> str:
    """``value`` written as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value))


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _constraints(field: Any) -> list[str]:
    """Human forms of a field's bounds, pattern and allowed values."""
    found: list[str] = []
    for item in field.metadata:
        for attr, symbol in _BOUNDS.items():
            if getattr(item, attr, None) is not None:
                found.append(f"{symbol} {getattr(item, attr)}")
        if getattr(item, "pattern", None) is not None:
            found.append(f"matches `{item.pattern}`")
    choices = _literal_choices(field.annotation)
    if choices:
        found.append("one of " + ", ".join(f"`{choice}`" for choice in choices))
    return found


def _env_names(name: str, field: Any, prefix: str) -> list[str]:
    """Environment variables read for a field, in order of precedence."""
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return [choice for choice in choices if isinstance(choice, str) and choice.isupper()]
    return [f"{prefix}{name.upper()}"]


def _default(field: Any) -> Any:
    """A field's default value, calling its factory."""
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def _sections(cls: type) -> dict[str, str]:
    """Field name -> the ``# --- section ---`` comment it sits under in the source of ``cls``
    and of the settings classes it derives from."""
    section, found = "other", {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("taskrt.settings"):
            continue
        for line in inspect.getsource(klass).splitlines():
            heading = re.match(r"\s*# --- ([\w ]+?) -+$", line)
            if heading:
                section = heading.group(1)
            field = re.match(r"    (\w+): ", line)
            if field:
                found[field.group(1)] = section
    return found


def builtin_sections() -> list[tuple[str, str, type[PluginSettings]]]:
    """(name, module, model) of every settings section the plugins shipped in
    ``taskrt_plugins`` register, in module order: the same whatever else is installed."""
    import importlib
    import pkgutil

    import taskrt_plugins

    found: list[tuple[str, str, type[PluginSettings]]] = []
    registered: list[tuple[str, type[PluginSettings]]] = []
    for info in sorted(pkgutil.iter_modules(taskrt_plugins.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"taskrt_plugins.{info.name}")
        hook = getattr(module, "register_settings", None)
        if hook is not None:
            start = len(registered)
            hook(register=lambda name, model: registered.append((name, model)))
            found += [(name, module.__name__, model) for name, model in registered[start:]]
    return found


def _field_doc(key: str, field: Any, env: list[str]) -> list[str]:
    """The ``### key`` entry of one setting."""
    default = _default(field)
    out = ["", f"### `{key}`", "", str(field.description or "(no description)"), ""]
    env_text = f"`{env[0]}`" + "".join(f", falls back to `{alt}`" for alt in env[1:])
    type_name = _type_name(field.annotation)
    if type_name.startswith("list["):
        env_text += " (comma-separated)"
    elif type_name == "bool":
        env_text += " (`true` or `false`)"
    out.append(f"- Environment: {env_text}")
    out.append(f"- TOML key: `{key}`")
    out.append(f"- Type: `{type_name}`")
    out.append("- Default: " + ("unset" if default is None else f"`{_toml(default)}`"))
    constraints = _constraints(field)
    if constraints:
        out.append("- Allowed: " + "; ".join(constraints))
    return out


def _example(fields: list[tuple[str, Any]]) -> list[str]:
    """A TOML block setting every one of ``fields`` to its default."""
    out = ["```toml"]
    for key, field in fields:
        default = _default(field)
        out.append(f"# {key}: unset" if default is None else f"{key} = {_toml(default)}")
    return [*out, "```"]


def render_settings() -> str:
    """The settings reference: every field of :class:`taskrt.settings.Settings`, then the
    settings sections of the plugins shipped with taskrt."""
    from taskrt.settings import CONFIG_ENV_VAR, Settings

    prefix = str(Settings.model_config.get("env_prefix", ""))
    fields = Settings.model_fields
    sections = _sections(Settings)
    plugins = [
        (name, module, [(f"{name}_{f}", field) for f, field in model.model_fields.items()])
        for name, module, model in builtin_sections()
    ]
    out = [
        GENERATED_NOTE.format(name="settings"),
        "",
        "# Settings reference",
        "",
        f"Every setting is a field of `taskrt.settings.Settings`. Each one can be set by an "
        f"environment variable named `{prefix}<FIELD>` in upper case, or by a top-level key of a "
        f"TOML file named by `taskrt --config FILE` or `{CONFIG_ENV_VAR}`. Precedence, highest "
        "first: keyword arguments given in code, environment variables, the TOML file, the "
        "defaults below. `TASKRT_DATABASE_URL` falls back to `DATABASE_URL` and "
        "`TASKRT_REDIS_URL` to `REDIS_URL`, the names hosting platforms set. List settings are "
        "comma-separated in the environment (`TASKRT_PLUGINS_DISABLE=a,b`) and TOML arrays in a "
        "file. Unknown keys are an error. `taskrt config show` prints the effective values.",
        "",
        "Plugins own their settings: a plugin registers a section through the "
        "`register_settings` hook, and its fields are set the same way, named after the "
        "section (`TASKRT_JWT_SECRET`, TOML key `jwt_secret`). They are checked when the "
        "plugins load, and a key that no loaded plugin takes is an error like any unknown key. The "
        "sections of the plugins shipped with taskrt follow the core settings below.",
        "",
        "| setting | environment variable | default |",
        "|---|---|---|",
    ]
    rows = [(name, field, _env_names(name, field, prefix)[0]) for name, field in fields.items()]
    for _, _, plugin_fields in plugins:
        rows += [(key, field, f"{prefix}{key.upper()}") for key, field in plugin_fields]
    for key, field, env in rows:
        default = _default(field)
        shown = "unset" if default is None else f"`{_toml(default)}`"
        out.append(f"| [`{key}`](#{key}) | `{env}` | {shown} |")
    current = None
    for name, field in fields.items():
        if sections.get(name, "other") != current:
            current = sections.get(name, "other")
            out += ["", f"## {current.capitalize()}"]
        out += _field_doc(name, field, _env_names(name, field, prefix))
    for name, module, plugin_fields in plugins:
        out += ["", f"## Plugin `{name}`", "", f"Registered by `{module}`."]
        for key, field in plugin_fields:
            out += _field_doc(key, field, [f"{prefix}{key.upper()}"])
    out += ["", "## Example TOML file", "", "Every core setting at its default:", ""]
    out += _example(list(fields.items()))
    for name, _, plugin_fields in plugins:
        out += ["", f"The `{name}` plugin's settings at their defaults:", ""]
        out += _example(plugin_fields)
    out.append("")
    return "\n".join(out)
