"""The runtime: settings, the plugin manager and the registry, built once per process on demand.

There is no module-global plugin manager. A program (the CLI, a worker, the API, a test) builds a
:class:`Runtime` and passes it on; tests build one with exactly the plugins they need.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from taskrt import metrics
from taskrt.plugins import LoadedPlugins, Observers, Registry, build_registry, load_plugins
from taskrt.settings import CORE_PREFIXES, Settings, load_settings
from taskrt.settings_sections import collect_sections


class Runtime:
    """Everything plugins contributed, for one process."""

    def __init__(self, settings: Settings, loaded: LoadedPlugins, registry: Registry) -> None:
        self.settings = settings
        self.loaded = loaded
        self.registry = registry
        self.observers = Observers(loaded.manager, trace=settings.plugins_trace)

    @classmethod
    def load(
        cls,
        settings: Settings | None = None,
        *,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
    ) -> Runtime:
        """Load plugins (entry points unless ``entry_points=False``, then ``plugins``)."""
        settings = settings if settings is not None else load_settings()
        loaded = load_plugins(settings, plugins=plugins, entry_points=entry_points)
        settings.adopt(collect_sections(loaded.manager, CORE_PREFIXES))  # plugins' own settings
        metrics.label_tenants(settings.metrics_tenant_label)  # process-wide, like logging
        return cls(settings, loaded, build_registry(loaded))

    @property
    def plugin_manager(self) -> Any:
        """The pluggy plugin manager (for advanced use; prefer :attr:`observers`)."""
        return self.loaded.manager

    def add_commands(self, cli: click.Group) -> None:
        """Let plugins add their commands to ``cli``; a failing plugin is logged and skipped."""
        self.observers.notify("register_commands", cli=cli)
