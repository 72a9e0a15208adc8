"""What CLI commands share: the config path and, built on first use, settings, the runtime and
the wired :class:`~taskrt.app.App` (store, queue backend, services)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import click

from taskrt.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from taskrt.app import App
    from taskrt.records import Actor
    from taskrt.runtime import Runtime
    from taskrt.schedule_service import ScheduleService
    from taskrt.service import TaskService


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

    @cached_property
    def app(self) -> App:
        """The store, queue backend and services, wired once (the schema is prepared first)."""
        from taskrt.app import App

        return App.open(self.settings, runtime=self.runtime, prepare=self.prepare_database)

    @property
    def service(self) -> TaskService:
        """The task service over the configured store and queue backend."""
        return self.app.service

    @property
    def schedules(self) -> ScheduleService:
        """The schedule service over :attr:`service`."""
        return self.app.schedules

    def prepare_database(self, engine: Engine) -> None:
        """Create the embedded SQLite schema on first use; on a server, check it (one-line
        errors naming the setting)."""
        from taskrt.db.readiness import prepare_database

        if prepare_database(self.settings, engine):
            click.echo(f"taskrt: created the database schema in {engine.url}", err=True)

    def actor(self) -> Actor:
        """The audit actor for changes made from this command line (``cli:<user>``)."""
        import getpass

        from taskrt.records import Actor

        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return Actor(f"cli:{user}")


def get_state(ctx: click.Context | None = None) -> CliState:
    """The :class:`CliState` of the current invocation."""
    ctx = ctx or click.get_current_context()
    return ctx.ensure_object(CliState)
