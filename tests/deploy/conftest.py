"""Fixtures of the deployment tests: a real ``taskrt api`` behind nginx running the shipped
``config/nginx/nginx.conf``, and supervisord running the shipped ``supervisor/`` files."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.support import ApiProcess, free_port
from tests.deploy.support import Nginx, Supervisord
from tests.support import procs, services
from tests.support.procs import run_cli


@dataclass
class Gateway:
    """nginx in front of one ``taskrt api``, and a producer API key made with the real CLI."""

    nginx: Nginx
    api: ApiProcess
    key: str

    @property
    def url(self) -> str:
        """Base URL of nginx."""
        return self.nginx.url


@contextmanager
def running_gateway(env: dict[str, str], log_dir: Path) -> Iterator[Gateway]:
    """nginx (shipped configuration) in front of a real ``taskrt api`` on ``env``'s database."""
    key = run_cli(
        ["apikey", "create", "--name", "gateway-test", "--role", "producer"], env
    ).stdout.strip()
    api = ApiProcess(env, log_dir / "api.log").start()
    nginx = Nginx(port=free_port(), upstream_port=api.port)
    try:
        nginx.start()
        yield Gateway(nginx=nginx, api=api, key=key)
    finally:
        for name in ("access.log", "error.log"):  # kept next to the test's other logs
            source = nginx.prefix / name
            if source.exists():
                shutil.copy(source, log_dir / f"nginx-{name}")
        nginx.stop()
        api.stop()


@pytest.fixture(scope="module")
def gateway(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway shared by a module's tests (starting one costs seconds), on a database and a
    Redis prefix of the module's own."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    with services.cloned_database(pg_template) as url:
        env = procs.service_env(url, redis_url=services.REDIS_URL, redis_prefix=prefix)
        try:
            with running_gateway(env, tmp_path_factory.mktemp("gateway")) as gw:
                yield gw
        finally:
            client = services.redis_client()
            services.delete_prefix(client, prefix)
            client.close()


@pytest.fixture
def own_gateway(service_env: dict[str, str], tmp_path: Path) -> Iterator[Gateway]:
    """A gateway for one test only (for a test that stops its API)."""
    with running_gateway(service_env, tmp_path) as gw:
        yield gw


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[Callable[..., Supervisord]]:
    """``supervisord(env, programs)`` starts supervisord on a copy of ``supervisor/`` loading
    ``programs``, its output in ``tmp_path/supervisord-N.log``; each is stopped afterwards."""
    started: list[Supervisord] = []

    def start(env: dict[str, str], programs: str) -> Supervisord:
        log_path = tmp_path / f"supervisord-{len(started)}.log"
        sv = Supervisord(env, programs, log_path).start()
        started.append(sv)
        return sv

    yield start
    for sv in started:
        sv.stop()
