"""Facts about the machine and the software a benchmark run measured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

import psycopg
import redis

from bench.env import PG_ADMIN, REDIS_URL, REPO_ROOT

PACKAGES = ("taskrt", "sqlalchemy", "psycopg", "redis", "fastapi", "uvicorn", "httpx", "pydantic")
PG_SETTINGS = ("synchronous_commit", "fsync", "shared_buffers", "max_connections", "jit")


def _cpuinfo() -> dict[str, Any]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                name, sep, value = line.partition(":")
                if sep and name.strip() in ("model name", "cpu MHz", "flags"):
                    fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    mhz = fields.get("cpu MHz")
    return {
        "count": os.cpu_count(),
        "model": fields.get("model name") or platform.processor(),
        "mhz": float(mhz) if mhz else None,
        "virtual_machine": "hypervisor" in fields.get("flags", "").split(),
    }


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def _postgres() -> dict[str, Any]:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = {
            name: row[0]
            for name in PG_SETTINGS
            if (row := conn.execute(f"SHOW {name}").fetchone()) is not None
        }
    return {"version": version[0] if version else None, "settings": settings}


def _redis() -> dict[str, Any]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        server = client.info("server")
        persistence = client.info("persistence")
        return {
            "version": server.get("redis_version"),
            "aof_enabled": persistence.get("aof_enabled"),
            "maxmemory": client.config_get("maxmemory").get("maxmemory"),
        }
    finally:
        client.close()


def _packages() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _safe(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    except Exception as exc:  # the run reports the failing service itself
        return {"version": None, "error": f"{type(exc).__name__}: {exc}"}


def facts() -> dict[str, Any]:
    """CPU, memory, OS, Python, PostgreSQL, Redis, package versions and the git commit."""
    status = _git("status", "--porcelain")
    return {
        "cpu": _cpuinfo(),
        "mem_total_bytes": _mem_total(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "postgresql": _safe(_postgres),
        "redis": _safe(_redis),
        "packages": _packages(),
        "git": {
            "commit": _git("rev-parse", "HEAD"),
            "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(status) if status is not None else None,
        },
    }
