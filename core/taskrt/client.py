"""The Python client: enqueue, inspect and cancel tasks from application code.

::

    import taskrt

    with taskrt.Client() as client:
        result = client.enqueue("example.echo", {"hello": "world"}, queue="high")
        print(client.get(result.id).status)

:class:`AsyncClient` offers the same methods as coroutines; it runs the blocking client in a
worker thread, so it is safe to call from an event loop.

A client acts in one tenant: ``Client(tenant="acme")``, else the ``tenant`` setting
(TASKRT_TENANT, default ``default``). Another tenant's tasks are not found.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

from taskrt.app import App
from taskrt.context import current_tenant
from taskrt.enqueue import EnqueueResult, EnqueueSpec
from taskrt.records import Actor, TaskRecord
from taskrt.runtime import Runtime
from taskrt.service import TenantTasks
from taskrt.settings import Settings, load_settings

__all__ = ["AsyncClient", "Client", "EnqueueResult", "default_client"]


class Client:
    """A synchronous client. Connects lazily; one client is safe to share between threads.

    ``tenant`` is the tenant every call acts in (None: the ``tenant`` setting); it must
    exist (UnknownTenantError on first use otherwise)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        runtime: Runtime | None = None,
        actor: str | None = None,
        tenant: str | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = settings or (runtime.settings if runtime else None)
        self._actor_name = actor
        self._tenant = tenant
        self._follow_running_task = False
        self._scopes: dict[str, TenantTasks] = {}

    @cached_property
    def runtime(self) -> Runtime:
        """The runtime (plugins loaded on first use)."""
        return self._runtime or Runtime.load(self.settings)

    @cached_property
    def settings(self) -> Settings:
        """The client's settings."""
        return self._settings or load_settings()

    @cached_property
    def app(self) -> App:
        """The store, queue backend and service this client uses (built on first use)."""
        return App.open(self.settings, runtime=self.runtime)

    @property
    def tenant(self) -> str:
        """The tenant calls act in: ``tenant`` given, else (for the default client inside a
        handler) the running task's, else the ``tenant`` setting."""
        if self._tenant is not None:
            return self._tenant
        if self._follow_running_task:
            running = current_tenant.get()
            if running is not None:
                return running
        return self.settings.tenant

    @property
    def service(self) -> TenantTasks:
        """The service layer this client calls, bound to :attr:`tenant`."""
        tenant = self.tenant
        scope = self._scopes.get(tenant)
        if scope is None:
            scope = self._scopes[tenant] = self.app.service.scoped(tenant)
        return scope

    @property
    def _actor(self) -> Actor | None:
        if not self._actor_name:
            return None
        return Actor(self._actor_name, tenant=self.tenant)

    def enqueue(
        self,
        name: str,
        payload: Any = None,
        *,
        queue: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
        max_retries: int | None = None,
        retry: str | None = None,
        retry_params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        trace_id: str | None = None,
    ) -> EnqueueResult:
        """Create a task; ``result.created`` is False when a live task held ``dedup_key``."""
        spec = EnqueueSpec(
            name=name,
            payload=payload,
            queue=queue,
            delay=delay,
            run_at=run_at,
            dedup_key=dedup_key,
            max_retries=max_retries,
            retry=retry,
            retry_params=retry_params,
            timeout=timeout,
            priority=priority,
            trace_id=trace_id,
        )
        return self.service.enqueue(spec, actor=self._actor)

    def enqueue_many(self, tasks: Sequence[EnqueueSpec | Mapping[str, Any]]) -> list[EnqueueResult]:
        """Create many tasks in one transaction and one dispatch pipeline (all or nothing).

        Each item is an :class:`~taskrt.service.EnqueueSpec` or a dict with the same keys as
        :meth:`enqueue` (``name`` required).
        """
        specs = [t if isinstance(t, EnqueueSpec) else EnqueueSpec.from_mapping(t) for t in tasks]
        return self.service.enqueue_many(specs, actor=self._actor)

    def get(self, task_id: uuid.UUID | str) -> TaskRecord:
        """The task and all its runs."""
        return self.service.get(_as_uuid(task_id))

    def list_tasks(
        self,
        *,
        payload: Mapping[str, Any] | None = None,
        limit: int = 50,
        before: uuid.UUID | str | None = None,
        **filters: Any,
    ) -> list[TaskRecord]:
        """Tasks newest first (without their runs), filtered like ``taskrt task list``:
        ``status``, ``queue``, ``name``, ``kind``, ``created_after``/``created_before``,
        ``finished_after``/``finished_before``, ``error_type``, ``dedup_key``, and ``payload``
        as ``{"customer_id": 42, "region.code": "eu"}`` (dotted key paths). ``before`` is the
        id of the last task of the previous page (docs/how-to/search.md)."""
        from taskrt.store.search import PayloadMatch, TaskSearch

        matches = tuple(PayloadMatch.of(path, value) for path, value in (payload or {}).items())
        search = TaskSearch(payload=matches, **filters)
        cursor = _as_uuid(before) if before is not None else None
        return self.service.list_tasks(search, limit=limit, before=cursor)

    def cancel(self, task_id: uuid.UUID | str) -> TaskRecord:
        """Cancel a task (a running one is asked to stop and ends ``cancelled``)."""
        return self.service.cancel(_as_uuid(task_id), actor=self._actor)

    def close(self) -> None:
        """Release connections."""
        if "app" in self.__dict__:
            self.app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, awaited."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        runtime: Runtime | None = None,
        actor: str | None = None,
        tenant: str | None = None,
    ) -> None:
        self._client = Client(settings, runtime=runtime, actor=actor, tenant=tenant)

    @property
    def tenant(self) -> str:
        """See :attr:`Client.tenant`."""
        return self._client.tenant

    async def enqueue(self, name: str, payload: Any = None, **options: Any) -> EnqueueResult:
        """See :meth:`Client.enqueue`."""
        return await asyncio.to_thread(self._client.enqueue, name, payload, **options)

    async def enqueue_many(
        self, tasks: Sequence[EnqueueSpec | Mapping[str, Any]]
    ) -> list[EnqueueResult]:
        """See :meth:`Client.enqueue_many`."""
        return await asyncio.to_thread(self._client.enqueue_many, tasks)

    async def get(self, task_id: uuid.UUID | str) -> TaskRecord:
        """See :meth:`Client.get`."""
        return await asyncio.to_thread(self._client.get, task_id)

    async def list_tasks(self, **filters: Any) -> list[TaskRecord]:
        """See :meth:`Client.list_tasks`."""
        return await asyncio.to_thread(lambda: self._client.list_tasks(**filters))

    async def cancel(self, task_id: uuid.UUID | str) -> TaskRecord:
        """See :meth:`Client.cancel`."""
        return await asyncio.to_thread(self._client.cancel, task_id)

    async def close(self) -> None:
        """Release connections."""
        await asyncio.to_thread(self._client.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    from taskrt.exceptions import ValidationError

    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError(f"{value!r} is not a task id (a UUID)") from None


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """A client built from the environment on first use (for ``task_type.enqueue(...)``).
    Inside a handler it acts in the running task's tenant, so child tasks land beside their
    parent; elsewhere in the ``tenant`` setting's."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
            _default._follow_running_task = True
        return _default
