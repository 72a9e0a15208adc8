"""Fixtures of the HTTP API tests: the app in-process on this test's database and Redis prefix,
API keys and JWTs of each role, and ``taskrt api`` subprocesses on free ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from taskrt.api import create_app
from taskrt.auth import Role
from taskrt.backends import open_queue_backend, open_store
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import Settings, load_settings
from taskrt.store import Store
from taskrt_plugins.auth_apikey import create_api_key
from tests.api.support import ApiProcess

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@dataclass
class Api:
    """The API app in this process, with helpers to make credentials."""

    client: TestClient
    service: TaskService
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        """The store the app writes."""
        return self.service.store

    def key(self, role: Role | str, name: str | None = None) -> str:
        """A new API key of ``role``."""
        role = Role(role)
        _, key = create_api_key(
            self.store, name=name or f"{role.value}-{uuid.uuid4().hex[:6]}", role=role
        )
        return key

    def auth(self, role: Role | str) -> dict[str, str]:
        """Headers with a (cached) API key of ``role``."""
        role = Role(role).value
        if role not in self.keys:
            self.keys[role] = self.key(role, name=role)
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def jwt(self, role: str = "reader", *, secret: str = JWT_SECRET, **claims: Any) -> str:
        """An HS256 JWT for this app's secret (``exp`` an hour ahead unless given)."""
        body = {"sub": "jwt-user", "role": role, "exp": int(time.time()) + 3600, **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, "HS256")


ApiFactory = Callable[..., Api]


@pytest.fixture
def make_api(pg_url: str, redis_url: str, redis_prefix: str) -> Iterator[ApiFactory]:
    """``make_api(**settings)`` builds the app on this test's database and Redis prefix, with
    the ``apikey`` and ``jwt`` backends and the test task types; everything is closed after."""
    opened: list[tuple[TestClient, TaskService]] = []

    def make(**overrides: Any) -> Api:
        values: dict[str, Any] = {
            "database_url": pg_url,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "plugins_modules": ["tests.support.testkit"],
            "auth_backends": ["apikey", "jwt"],
            "jwt_secret": JWT_SECRET,
            **overrides,
        }
        settings = load_settings(**values)
        runtime = Runtime.load(settings)
        store = open_store(settings)
        service = TaskService(runtime, store, open_queue_backend(settings, store))
        client = TestClient(create_app(runtime, service), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, service))
        return Api(client=client, service=service, settings=settings)

    yield make
    for client, service in opened:
        client.__exit__(None, None, None)
        service.close()


@pytest.fixture
def api(make_api: ApiFactory) -> Api:
    """The app with default settings."""
    return make_api()


@pytest.fixture
def api_process(service_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """``api_process(**settings)`` starts ``taskrt api`` on a free port (stopped afterwards)."""
    started: list[ApiProcess] = []

    def start(name: str = "api", **settings: Any) -> ApiProcess:
        env = {**service_env, "TASKRT_AUTH_BACKENDS": "apikey,jwt", "TASKRT_JWT_SECRET": JWT_SECRET}
        env.update({f"TASKRT_{k.upper()}": str(v) for k, v in settings.items()})
        proc = ApiProcess(env, tmp_path / f"{name}.log").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def admin_key(env: dict[str, str]) -> str:
    """Create an admin key through the real CLI; returns the key it printed."""
    from tests.support.procs import run_cli

    return run_cli(["apikey", "create", "--name", "admin", "--role", "admin"], env).stdout.strip()


__all__ = ["Api", "ApiFactory", "admin_key"]
