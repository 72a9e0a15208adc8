"""Loading plugins: the one plugin-manager factory, the registry of what plugins registered, and
the safe dispatcher for observer hooks.

Order of loading: hookspecs, then taskrt's own subscribers (its metrics and log lines, see
:mod:`taskrt.subscribers`), then entry points of the ``taskrt`` group (filtered by the allow and
block lists), then plugins passed explicitly, then ``check_pending()``. Nothing here runs at import
time; a :class:`~taskrt.runtime.Runtime` calls :func:`load_plugins` when it is built.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from taskrt import hookspecs
from taskrt.exceptions import (
    DuplicateRegistrationError,
    PluginLoadError,
    UnknownTaskError,
    ValidationError,
)
from taskrt.handlers import TaskType, check_task_name
from taskrt.retry import RetryStrategy, RetryStrategyFactory, build_strategy
from taskrt.settings import Settings
from taskrt.subscribers import BUILTIN_SUBSCRIBERS

ENTRY_POINT_GROUP = "taskrt"
log = logging.getLogger("taskrt.plugins")
trace_log = logging.getLogger("taskrt.plugins.trace")

_BUILTIN_NAMES = frozenset(name for name, _ in BUILTIN_SUBSCRIBERS)
_STRATEGY_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


def normalize_name(name: str) -> str:
    """Normalize a distribution or plugin name the way packaging does (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    distribution: str | None
    version: str | None
    module: str

    def describe(self) -> str:
        """Human form naming the distribution, for error messages."""
        if self.distribution:
            return f"plugin {self.name!r} (distribution {self.distribution} {self.version})"
        return f"plugin {self.name!r} (module {self.module}, not from a distribution)"


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """A plugin that could not be loaded; taskrt started without it."""

    name: str
    distribution: str | None
    version: str | None
    error: str


@dataclass
class LoadedPlugins:
    """The plugin manager and what went into it."""

    manager: pluggy.PluginManager
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    trace: bool = False


def _is_selected(ep: importlib.metadata.EntryPoint, settings: Settings) -> bool:
    dist = ep.dist.name if ep.dist else ""
    names = {normalize_name(ep.name), normalize_name(dist)} - {""}
    blocked = {normalize_name(n) for n in settings.plugins_disable}
    if names & blocked:
        return False
    if settings.plugins_load is None:
        return True
    return bool(names & {normalize_name(n) for n in settings.plugins_load})


def _unknown_hooks(plugin: object, manager: pluggy.PluginManager) -> list[str]:
    unknown = []
    for caller in manager.get_hookcallers(plugin) or []:
        if caller.spec is None:
            unknown.append(caller.name)
    return unknown


def load_plugins(
    settings: Settings,
    *,
    plugins: Iterable[object] = (),
    entry_points: bool = True,
) -> LoadedPlugins:
    """Build a plugin manager: hookspecs, selected entry points, explicit plugins, then checks.

    A plugin that fails to import or validate is logged with its distribution and left out; the
    others still load.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    loaded = LoadedPlugins(manager=manager, trace=settings.plugins_trace)
    if settings.plugins_trace:
        _enable_tracing(manager)
    # last registered, first called: register them backwards to call them in their order
    for name, subscriber in reversed(BUILTIN_SUBSCRIBERS):  # not in ``infos``: not loaded ones
        manager.register(subscriber(), name=name)

    if entry_points:
        for ep in sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            dist_name = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if not _is_selected(ep, settings):
                loaded.skipped.append(ep.name)
                log.debug("plugin %s from %s not loaded (allow/block list)", ep.name, dist_name)
                continue
            name = ep.name if manager.get_plugin(ep.name) is None else f"{dist_name}:{ep.name}"
            try:
                module = ep.load()
            except Exception as exc:  # any import-time error of a plugin must not stop taskrt
                _record_failure(loaded, name, dist_name, version, exc)
                continue
            _register(loaded, module, PluginInfo(name, dist_name, version, ep.value))

    if settings.plugins_modules and os.getcwd() not in sys.path:
        # like `python -m` and Celery's -A: modules of the project in the working directory load
        sys.path.insert(0, os.getcwd())
    for module_path in settings.plugins_modules:
        try:
            module = importlib.import_module(module_path)
        except Exception as exc:  # a broken module must not stop taskrt
            _record_failure(loaded, module_path, None, None, exc)
            continue
        if manager.is_registered(module):
            continue
        _register(loaded, module, PluginInfo(module_path, None, None, module_path))

    for plugin in plugins:
        module_name = getattr(plugin, "__name__", type(plugin).__name__)
        name = module_name
        suffix = 2
        while manager.get_plugin(name) is not None or manager.is_blocked(name):
            name = f"{module_name}#{suffix}"
            suffix += 1
        _register(loaded, plugin, PluginInfo(name, None, None, module_name))

    manager.check_pending()
    return loaded


def _register(loaded: LoadedPlugins, plugin: object, info: PluginInfo) -> None:
    manager = loaded.manager
    try:
        manager.register(plugin, name=info.name)
    except Exception as exc:  # pluggy validation error, or a plugin object that is not one
        _record_failure(loaded, info.name, info.distribution, info.version, exc)
        return
    unknown = _unknown_hooks(plugin, manager)
    if unknown:
        manager.unregister(plugin)
        reason = f"implements unknown hook(s) {', '.join(sorted(unknown))} (misspelt?)"
        _record_failure(loaded, info.name, info.distribution, info.version, reason)
        return
    loaded.infos[info.name] = info


def _record_failure(
    loaded: LoadedPlugins,
    name: str,
    distribution: str | None,
    version: str | None,
    error: BaseException | str,
) -> None:
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    failure = PluginLoadError(name, distribution, reason)
    if isinstance(error, BaseException):
        log.error("%s; taskrt continues without it", failure, exc_info=error)
    else:
        log.error("%s; taskrt continues without it", failure)
    loaded.failures.append(PluginFailure(name, distribution, version, reason))


def _enable_tracing(manager: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        trace_log.info(
            "hook %s(%s) -> %s",
            hook_name,
            ", ".join(f"{k}={v!r}" for k, v in kwargs.items()),
            [impl.plugin_name for impl in impls],
        )

    def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
        return None

    manager.add_hookcall_monitoring(before, after)


# --- registry -----------------------------------------------------------------------------


@dataclass
class Registry:
    """Everything the discovery hooks registered, and which plugin registered each name."""

    task_types: dict[str, TaskType[Any]] = field(default_factory=dict)
    retry_strategies: dict[str, RetryStrategyFactory] = field(default_factory=dict)
    auth_backends: dict[str, Callable[..., Any]] = field(default_factory=dict)
    origins: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)

    def task_type(self, name: str) -> TaskType[Any]:
        """The task type registered as ``name``; UnknownTaskError if none is."""
        try:
            return self.task_types[name]
        except KeyError:
            known = ", ".join(sorted(self.task_types)) or "none (is a handler package installed?)"
            raise UnknownTaskError(
                f"unknown task {name!r}; registered task types: {known}",
                [{"loc": ["name"], "msg": f"unknown task {name!r}"}],
            ) from None

    def retry_strategy(self, name: str, params: Mapping[str, Any] | None = None) -> RetryStrategy:
        """Build strategy ``name`` with ``params``; ValidationError naming the problem if bad."""
        try:
            factory = self.retry_strategies[name]
        except KeyError:
            known = ", ".join(sorted(self.retry_strategies)) or "none"
            raise ValidationError(
                f"unknown retry strategy {name!r}; registered strategies: {known}",
                [{"loc": ["retry"], "msg": f"unknown retry strategy {name!r}"}],
            ) from None
        try:
            return build_strategy(factory, dict(params or {}))
        except Exception as exc:  # pydantic ValidationError, TypeError for bad keywords, ...
            errors = getattr(exc, "errors", None)
            details = (
                [{"loc": ["retry_params", *map(str, e["loc"])], "msg": e["msg"]} for e in errors()]
                if callable(errors)
                else [{"loc": ["retry_params"], "msg": str(exc)}]
            )
            text = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details)
            raise ValidationError(
                f"invalid parameters for retry strategy {name!r}: {text}", details
            ) from None

    def origin(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin that registered ``name`` of ``kind`` (``task``, ``retry``, ``auth``)."""
        return self.origins.get((kind, name))


def build_registry(loaded: LoadedPlugins) -> Registry:
    """Call each discovery hook of each plugin with a ``register`` that records the plugin."""
    registry = Registry()
    hook = loaded.manager.hook
    _collect(loaded, registry, hook.register_task_handlers, "task", _add_task_type)
    _collect(loaded, registry, hook.register_retry_strategies, "retry", _add_retry_strategy)
    _collect(loaded, registry, hook.register_auth_backends, "auth", _add_auth_backend)
    return registry


_Adder = Callable[[dict[str, Any], tuple[Any, ...]], tuple[str, Any]]


def _add_task_type(staged: dict[str, Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    if len(args) != 1 or not isinstance(args[0], TaskType):
        raise TypeError("register() takes one TaskType (a function decorated with @taskrt.task)")
    task_type: TaskType[Any] = args[0]
    return task_type.name, task_type


def _add_retry_strategy(staged: dict[str, Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    if len(args) != 2 or not isinstance(args[0], str) or not callable(args[1]):
        raise TypeError("register() takes (name, factory) for a retry strategy")
    name, factory = args
    if not _STRATEGY_NAME_RE.match(name):
        raise ValueError(f"invalid retry strategy name {name!r}")
    return name, factory


def _add_auth_backend(staged: dict[str, Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    if len(args) != 2 or not isinstance(args[0], str) or not callable(args[1]):
        raise TypeError("register() takes (name, factory) for an auth backend")
    name, factory = args
    if not _STRATEGY_NAME_RE.match(name):
        raise ValueError(f"invalid auth backend name {name!r}")
    return name, factory


_KIND_LABEL = {"task": "task type", "retry": "retry strategy", "auth": "auth backend"}


def _collect(
    loaded: LoadedPlugins,
    registry: Registry,
    hook: pluggy.HookCaller,
    kind: str,
    add: _Adder,
) -> None:
    targets: dict[str, dict[str, Any]] = {
        "task": registry.task_types,
        "retry": registry.retry_strategies,
        "auth": registry.auth_backends,
    }
    target = targets[kind]
    for impl in reversed(hook.get_hookimpls()):
        info = loaded.infos[impl.plugin_name]
        staged: dict[str, Any] = {}

        def register(
            *args: Any, _staged: dict[str, Any] = staged, _info: PluginInfo = info
        ) -> None:
            name, value = add(_staged, args)
            if kind == "task":
                check_task_name(name)
            if name in _staged:
                raise DuplicateRegistrationError(
                    _KIND_LABEL[kind], name, _info.describe(), _info.describe()
                )
            _staged[name] = value

        if loaded.trace:  # called per plugin, not through the hook, so trace it here
            trace_log.info("hook %s -> %s(register)", hook.name, impl.plugin_name)
        try:
            impl.function(register=register)
        except DuplicateRegistrationError:
            raise
        except Exception as exc:  # a broken discovery hook disables that plugin's registrations
            log.error(
                "%s raised in %s; its %s registrations are ignored",
                info.describe(),
                hook.name,
                _KIND_LABEL[kind],
                exc_info=exc,
            )
            loaded.failures.append(
                PluginFailure(info.name, info.distribution, info.version, f"{hook.name}: {exc!r}")
            )
            continue
        for name, value in staged.items():
            previous = registry.origins.get((kind, name))
            if previous is not None:
                raise DuplicateRegistrationError(
                    _KIND_LABEL[kind], name, previous.describe(), info.describe()
                )
            target[name] = value
            registry.origins[(kind, name)] = info


# --- observers ----------------------------------------------------------------------------


class Observers:
    """Calls observer hooks one implementation at a time, so a raising plugin breaks nothing.

    Each failure is logged with its traceback and counted in :attr:`errors`.
    """

    def __init__(self, manager: pluggy.PluginManager, *, trace: bool = False) -> None:
        self._manager = manager
        self._trace = trace
        self._impls: dict[str, list[tuple[str, Callable[..., Any], tuple[str, ...]]]] = {}
        self._lock = threading.Lock()
        self.errors: dict[str, int] = {}

    def _implementations(
        self, hook_name: str
    ) -> list[tuple[str, Callable[..., Any], tuple[str, ...]]]:
        impls = self._impls.get(hook_name)
        if impls is None:
            caller: pluggy.HookCaller = getattr(self._manager.hook, hook_name)
            impls = [
                (impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())
            ]
            self._impls[hook_name] = impls
        return impls

    def has(self, hook_name: str) -> bool:
        """True if any plugin implements ``hook_name`` (lets hot paths skip building arguments)."""
        return bool(self._implementations(hook_name))

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook_name`` with the arguments it asks for."""
        for plugin_name, function, argnames in self._implementations(hook_name):
            if self._trace and plugin_name not in _BUILTIN_NAMES:
                arguments = ", ".join(f"{n}={kwargs.get(n)!r}" for n in argnames)
                trace_log.info("hook %s -> %s(%s)", hook_name, plugin_name, arguments)
            try:
                function(**{name: kwargs[name] for name in argnames})
            except Exception:  # an observer must never break the task it observes
                with self._lock:
                    key = f"{plugin_name}.{hook_name}"
                    self.errors[key] = self.errors.get(key, 0) + 1
                log.error(
                    "plugin %r raised in %s; the task goes on\n%s",
                    plugin_name,
                    hook_name,
                    traceback.format_exc(),
                )
