"""What CLI commands share: the config path, the tenant and, built on first use, settings, the
runtime and the wired :class:`~taskrt.app.App` (store, queue backend, services).

Commands reach tasks and schedules only through :attr:`CliState.service` and
:attr:`CliState.schedules`, both bound to :attr:`CliState.tenant` (``--tenant``,
TASKRT_TENANT, the ``tenant`` setting, else ``default``). The command line has the database's
credentials, so it may act in any tenant that exists; an unknown one is "no such tenant"."""

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
    from taskrt.schedule_service import TenantSchedules
    from taskrt.service import TenantTasks


class CliState:
    """Lazily built objects for one CLI invocation."""

    def __init__(self, config_file: str | None = None, tenant: str | None = None) -> None:
        self.config_file = config_file
        self.tenant_option = tenant
        """``--tenant`` as given (None: the ``tenant`` setting decides)."""

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
    def tenant(self) -> str:
        """The tenant commands act in: ``--tenant`` (or TASKRT_TENANT), else the ``tenant``
        setting (which defaults to ``default``)."""
        if self.tenant_option is not None:
            return self.tenant_option
        return self.settings.tenant

    @property
    def tenant_chosen(self) -> bool:
        """Whether the user named a tenant (``--tenant``, TASKRT_TENANT, or a ``tenant``
        setting other than ``default``): commands that otherwise act on every tenant (the
        prune) then keep to it."""
        from taskrt.records import DEFAULT_TENANT

        return self.tenant_option is not None or self.settings.tenant != DEFAULT_TENANT

    def check_tenant(self, tenant: str) -> str:
        """``tenant`` if it exists; ValidationError for a malformed name, "no such tenant"
        (exit 1) for an unknown one."""
        return self.app.service.check_tenant(tenant)

    @cached_property
    def service(self) -> TenantTasks:
        """The task service over the configured store and queue backend, bound to
        :attr:`tenant`."""
        return self.app.service.scoped(self.check_tenant(self.tenant), operator=True)

    @cached_property
    def schedules(self) -> TenantSchedules:
        """The schedule service, bound to :attr:`tenant`."""
        return self.app.schedules.scoped(self.check_tenant(self.tenant))

    def prepare_database(self, engine: Engine) -> None:
        """Create the embedded SQLite schema on first use; on a server, check it (one-line
        errors naming the setting)."""
        from taskrt.db.readiness import prepare_database

        if prepare_database(self.settings, engine):
            click.echo(f"taskrt: created the database schema in {engine.url}", err=True)

    def actor(self, *, tenant: str | None = None) -> Actor:
        """The audit actor for changes made from this command line (``cli:<user>``), in
        ``tenant`` (default: :attr:`tenant`)."""
        import getpass

        from taskrt.records import Actor

        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return Actor(f"cli:{user}", tenant=self.tenant if tenant is None else tenant)


def get_state(ctx: click.Context | None = None) -> CliState:
    """The :class:`CliState` of the current invocation."""
    ctx = ctx or click.get_current_context()
    return ctx.ensure_object(CliState)
