"""The ``jwt`` auth backend plugin: bearer JSON Web Tokens signed with HS256 or RS256.

The backend lives in :mod:`taskrt_plugins.jwt_backend` and is imported only when a process
builds it (the API), so processes that never check a token (workers, schedulers) do not load
PyJWT and cryptography.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from taskrt import hookimpl
from taskrt.auth import AuthBackendFactory, AuthContext

if TYPE_CHECKING:
    from taskrt_plugins.jwt_backend import JwtBackend


def build_jwt_backend(context: AuthContext) -> JwtBackend:
    """Build the JWT backend from the settings in ``context``."""
    from taskrt_plugins.jwt_backend import JwtBackend

    return JwtBackend.from_context(context)


@hookimpl
def register_auth_backends(
    register: Callable[[str, AuthBackendFactory], None],
) -> None:
    """Register the ``jwt`` backend."""
    register("jwt", build_jwt_backend)
