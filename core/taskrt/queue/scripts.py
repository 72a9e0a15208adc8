"""The Lua scripts shipped beside this module (``redis_lua/*.lua``), run by EVALSHA.

redis-py's own ``Script`` objects ask Redis ``SCRIPT EXISTS`` before every pipeline that holds
one, a round trip per pipeline on the hot path. These scripts are loaded once instead; if Redis
forgets them (a restart, ``SCRIPT FLUSH``), the NOSCRIPT error reloads them and the call or
pipeline is sent again. That repeat is safe: when the scripts are gone, every EVALSHA in a
pipeline fails, so none of them ran the first time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.client import Pipeline

SCRIPT_NAMES = (
    "dispatch",
    "fetch",
    "renew",
    "settle",
    "expired",
    "promote",
    "replay",
    "withdraw",
    "adopt",
    "unlock",
)


@cache
def script_source(name: str) -> str:
    """The text of ``redis_lua/<name>.lua``."""
    return resources.files("taskrt.queue").joinpath("redis_lua", f"{name}.lua").read_text("utf-8")


class LuaScript:
    """One script: called directly it returns the reply; given a pipeline it queues itself."""

    def __init__(self, scripts: Scripts, name: str) -> None:
        self.scripts = scripts
        self.name = name
        self.source = script_source(name)
        self.sha = hashlib.sha1(self.source.encode("utf-8"), usedforsecurity=False).hexdigest()

    def __call__(
        self, *, keys: Sequence[str], args: Sequence[Any], client: Pipeline | None = None
    ) -> Any:
        if client is not None:
            client.evalsha(self.sha, len(keys), *keys, *args)
            return None
        try:
            return self.scripts.client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.scripts.load()
            return self.scripts.client.evalsha(self.sha, len(keys), *keys, *args)


class Scripts:
    """Every script, for one client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.dispatch = LuaScript(self, "dispatch")
        self.fetch = LuaScript(self, "fetch")
        self.renew = LuaScript(self, "renew")
        self.settle = LuaScript(self, "settle")
        self.expired = LuaScript(self, "expired")
        self.promote = LuaScript(self, "promote")
        self.replay = LuaScript(self, "replay")
        self.withdraw = LuaScript(self, "withdraw")
        self.adopt = LuaScript(self, "adopt")
        self.unlock = LuaScript(self, "unlock")

    def all(self) -> list[LuaScript]:
        """Every script."""
        return [getattr(self, name) for name in SCRIPT_NAMES]

    def load(self) -> None:
        """(Re)load every script into Redis."""
        pipe = self.client.pipeline(transaction=False)
        for script in self.all():
            pipe.script_load(script.source)
        pipe.execute()

    def run_pipeline(self, build: Callable[[Pipeline], None]) -> list[Any]:
        """Build a pipeline with ``build`` and execute it, reloading scripts if Redis lost them."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.load()
        raise AssertionError("unreachable")
