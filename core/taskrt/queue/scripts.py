"""Loads the Lua scripts shipped beside this module (``redis_lua/*.lua``) for one client."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

SCRIPT_NAMES = ("dispatch", "fetch", "renew", "settle", "expired", "promote", "replay", "withdraw")


@cache
def script_source(name: str) -> str:
    """The text of ``redis_lua/<name>.lua``."""
    return resources.files("taskrt.queue").joinpath("redis_lua", f"{name}.lua").read_text("utf-8")


class Scripts:
    """The registered scripts; each runs by EVALSHA, reloading itself after a SCRIPT FLUSH."""

    def __init__(self, client: redis.Redis) -> None:
        self.dispatch: Script = client.register_script(script_source("dispatch"))
        self.fetch: Script = client.register_script(script_source("fetch"))
        self.renew: Script = client.register_script(script_source("renew"))
        self.settle: Script = client.register_script(script_source("settle"))
        self.expired: Script = client.register_script(script_source("expired"))
        self.promote: Script = client.register_script(script_source("promote"))
        self.replay: Script = client.register_script(script_source("replay"))
        self.withdraw: Script = client.register_script(script_source("withdraw"))
