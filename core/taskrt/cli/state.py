"""What CLI commands share: the config path and, built on first use, settings and the runtime."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import click

from taskrt.settings import Settings, load_settings

if TYPE_CHECKING:
    from taskrt.runtime import Runtime


class CliState:
    """Lazily built objects for one CLI invocation."""

    def __init__(self, config_file: str | None = None) -> None:
        self.config_file = config_file

    @cached_property
    def settings(self) -> Settings:
        """Effective settings (``--config`` file, environment, defaults)."""
        return load_settings(self.config_file)

    @cached_property
    def runtime(self) -> Runtime:
        """The runtime with every selected plugin loaded."""
        from taskrt.runtime import Runtime

        return Runtime.load(self.settings)


def get_state(ctx: click.Context | None = None) -> CliState:
    """The :class:`CliState` of the current invocation."""
    ctx = ctx or click.get_current_context()
    return ctx.ensure_object(CliState)
