"""The ``jwt`` auth backend plugin: bearer JSON Web Tokens signed with HS256 or RS256.

The backend lives in :mod:`taskrt_plugins.jwt_backend` and is imported only when a process
builds it (the API), so processes that never check a token (workers, schedulers) do not load
PyJWT and cryptography.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from taskrt import hookimpl
from taskrt.auth import AuthBackendFactory, AuthContext
from taskrt.settings import PluginSettings

if TYPE_CHECKING:
    from taskrt_plugins.jwt_backend import JwtBackend


class JwtSettings(PluginSettings):
    """The ``jwt`` settings section: ``TASKRT_JWT_*`` variables, ``jwt_*`` keys of the file."""

    model_config = SettingsConfigDict(env_prefix="TASKRT_JWT_")

    secret: SecretStr | None = Field(
        default=None,
        description=(
            "Shared secret of the `jwt` auth backend: tokens must be signed with HS256 and this "
            "secret. Give this or `jwt_public_key`, not both."
        ),
    )
    public_key: str | None = Field(
        default=None,
        description=(
            "PEM public key (the text, or the path of a file holding it) of the `jwt` auth "
            "backend: tokens must be signed with RS256 and the matching private key."
        ),
    )
    issuer: str | None = Field(
        default=None, description="When set, a token's `iss` claim must equal it."
    )
    audience: str | None = Field(
        default=None,
        description=(
            "When set, a token's `aud` claim must contain it; when unset, a token carrying an "
            "`aud` claim is refused."
        ),
    )
    max_lifetime: float | None = Field(
        default=None,
        gt=0,
        description=(
            "When set, the `jwt` backend refuses tokens meant to live longer than this many "
            "seconds: `exp - iat`, or `exp - now` for a token without `iat` (so a stolen "
            "long-lived token cannot be used). Unset: no limit beyond `exp` itself."
        ),
    )
    role_claim: str = Field(
        default="role",
        min_length=1,
        description=(
            "Claim holding the caller's role (`reader`, `producer`, `admin` or `operator`). "
            "The subject comes from `sub`; `exp` is always required."
        ),
    )
    tenant_claim: str = Field(
        default="tenant",
        min_length=1,
        description=(
            "Claim holding the tenant the caller belongs to. It must name an existing tenant. "
            "A token without it belongs to the `default` tenant, unless "
            "`jwt_require_tenant` is set."
        ),
    )
    require_tenant: bool = Field(
        default=False,
        description=(
            "Refuse (401) tokens without the tenant claim. Set it when more than one tenant "
            "exists, so a token minted without a tenant cannot act in `default`."
        ),
    )


@hookimpl
def register_settings(register: Callable[[str, type[PluginSettings]], None]) -> None:
    """Register the ``jwt`` settings section."""
    register("jwt", JwtSettings)


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
