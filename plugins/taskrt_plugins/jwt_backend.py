"""The ``jwt`` auth backend itself (imported by :mod:`taskrt_plugins.auth_jwt` only when a
process builds the backend, so workers never load PyJWT and cryptography).

Bearer JSON Web Tokens signed with HS256 or RS256.

Configured by settings: ``TASKRT_JWT_SECRET`` selects HS256 with that shared secret,
``TASKRT_JWT_PUBLIC_KEY`` (PEM text or a file path) selects RS256. The one algorithm configured
is the only one accepted, so neither ``alg: none`` nor an HS256 token "signed" with the RS256
public key can pass. ``exp`` and ``sub`` are required; ``iss`` and ``aud`` are checked when
``TASKRT_JWT_ISSUER`` / ``TASKRT_JWT_AUDIENCE`` are set; the role is read from the claim named by
``TASKRT_JWT_ROLE_CLAIM`` (default ``role``), the tenant from the claim named by
``TASKRT_JWT_TENANT_CLAIM`` (default ``tenant``; without it the token belongs to ``default``
unless ``TASKRT_JWT_REQUIRE_TENANT`` is set; an unknown tenant is refused). ``exp``, ``iat``
and ``nbf`` must be JSON numbers (a numeric string such as ``"9999999999"`` is refused), and
with ``TASKRT_JWT_MAX_LIFETIME`` set a token may not live longer than that (``exp - iat``, or
``exp - now`` without ``iat``).

Verification is PyJWT's: signature checking is security code that should not be written again.
A bearer token that is not a JWT at all is "not mine" (None), so an API key can follow it in the
chain; a JWT that fails any check is refused.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from taskrt.auth import (
    AuthContext,
    AuthenticationFailed,
    Credentials,
    Identity,
    KnownTenants,
    Role,
)
from taskrt.exceptions import ConfigurationError
from taskrt.limits import TENANT_NAME_PATTERN
from taskrt.records import DEFAULT_TENANT
from taskrt.settings import Settings
from taskrt_plugins.auth_jwt import JwtSettings

log = logging.getLogger("taskrt.auth.jwt")

TENANT_CACHE_TTL = 30.0
"""Seconds the backend trusts its list of existing tenants (a deleted tenant's tokens work
for at most this long; a new tenant's work at once)."""

_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)

MIN_SECRET_BYTES = 32
"""RFC 7518 section 3.2: an HS256 key must be at least as long as the hash (256 bits)."""


def load_public_key(value: str) -> RSAPublicKey:
    """An RSA public key from PEM text or from the file that ``value`` names."""
    text = value if value.lstrip().startswith("-----BEGIN") else _read(value)
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ConfigurationError(f"TASKRT_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("TASKRT_JWT_PUBLIC_KEY must be an RSA public key (for RS256)")
    return key


def _read(path: str) -> str:
    try:
        return Path(path).read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"TASKRT_JWT_PUBLIC_KEY is neither PEM text nor a readable PEM file: {exc}"
        ) from None


class JwtBackend:
    """Verifies bearer JWTs with one pinned algorithm."""

    def __init__(
        self,
        key: str | RSAPublicKey,
        algorithm: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        role_claim: str = "role",
        max_lifetime: float | None = None,
        tenant_claim: str = "tenant",
        require_tenant: bool = False,
        tenant_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.key = key
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.max_lifetime = max_lifetime
        self.tenant_claim = tenant_claim
        self.require_tenant = require_tenant
        self.tenant_exists = tenant_exists
        """Whether a tenant exists (None: only ``default`` does)."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, tenant_exists: Callable[[str], bool] | None = None
    ) -> JwtBackend:
        """The backend the ``jwt`` settings section describes; ConfigurationError if it does
        not describe one."""
        jwt_settings = settings.section("jwt", JwtSettings)
        secret = jwt_settings.secret.get_secret_value() if jwt_settings.secret else ""
        if secret and jwt_settings.public_key:
            raise ConfigurationError(
                "set TASKRT_JWT_SECRET (HS256) or TASKRT_JWT_PUBLIC_KEY (RS256), not both"
            )
        common: dict[str, Any] = {
            "issuer": jwt_settings.issuer,
            "audience": jwt_settings.audience,
            "role_claim": jwt_settings.role_claim,
            "max_lifetime": jwt_settings.max_lifetime,
            "tenant_claim": jwt_settings.tenant_claim,
            "require_tenant": jwt_settings.require_tenant,
            "tenant_exists": tenant_exists,
        }
        if secret:
            if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"TASKRT_JWT_SECRET is too short: HS256 needs at least {MIN_SECRET_BYTES} "
                    "bytes of secret"
                )
            return cls(secret, "HS256", **common)
        if jwt_settings.public_key:
            return cls(load_public_key(jwt_settings.public_key), "RS256", **common)
        raise ConfigurationError(
            "the jwt auth backend needs TASKRT_JWT_SECRET (HS256) or TASKRT_JWT_PUBLIC_KEY (RS256)"
        )

    @classmethod
    def from_context(cls, context: AuthContext) -> JwtBackend:
        """The factory registered as ``jwt``."""
        known = KnownTenants(context.store, ttl=TENANT_CACHE_TTL)
        return cls.from_settings(context.settings, tenant_exists=known.exists)

    def authenticate(self, credentials: Credentials) -> Identity | None:
        """The token's identity; None when the bearer token is not a JWT; AuthenticationFailed
        when it is one that fails a check."""
        token = credentials.bearer_token()
        if token is None or token.count(".") != 2:
            return None
        try:
            jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return None  # three dotted parts but no JWT header: somebody else's token
        try:
            # PyJWT reads times with int(), so "exp": "9999999999" would pass: refuse any time
            # claim that is not a JSON number before the verified decode reads it
            _check_time_types(jwt.decode(token, options={"verify_signature": False}))
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"JWT refused: {exc}") from None
        self._check_times(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthenticationFailed("JWT refused: sub must be a non-empty string")
        try:
            role = Role(str(claims.get(self.role_claim)))
        except ValueError:
            raise AuthenticationFailed(
                f"JWT refused: claim {self.role_claim!r} must be one of "
                f"{', '.join(r.value for r in Role)}"
            ) from None
        return Identity(subject=subject, role=role, backend="jwt", tenant=self._tenant(claims))

    def _tenant(self, claims: dict[str, Any]) -> str:
        """The token's tenant: its tenant claim, which must name an existing tenant; without
        the claim ``default`` (refused when ``require_tenant``)."""
        if self.tenant_claim not in claims:
            if self.require_tenant:
                raise AuthenticationFailed(
                    f"JWT refused: claim {self.tenant_claim!r} (the tenant) is required"
                )
            return DEFAULT_TENANT
        tenant = claims[self.tenant_claim]
        if not isinstance(tenant, str) or not _TENANT_NAME.match(tenant):
            raise AuthenticationFailed(
                f"JWT refused: claim {self.tenant_claim!r} must be a tenant name"
            )
        if tenant != DEFAULT_TENANT and (
            self.tenant_exists is None or not self.tenant_exists(tenant)
        ):
            raise AuthenticationFailed(f"JWT refused: no tenant {tenant!r}")
        return tenant

    def _check_times(self, claims: dict[str, Any]) -> None:
        """Refuse a token meant to live longer than ``max_lifetime``: ``exp - iat``, or
        ``exp - now`` for a token without ``iat``."""
        if self.max_lifetime is None:
            return
        exp = float(claims["exp"])
        start = float(claims["iat"]) if "iat" in claims else time.time()
        if exp - start > self.max_lifetime:
            raise AuthenticationFailed(
                f"JWT refused: it lives {exp - start:.0f} s (exp - "
                f"{'iat' if 'iat' in claims else 'now'}); TASKRT_JWT_MAX_LIFETIME allows "
                f"{self.max_lifetime:g} s"
            )


TIME_CLAIMS = ("exp", "iat", "nbf")


def _check_time_types(claims: dict[str, Any]) -> None:
    """AuthenticationFailed unless every time claim present is a finite JSON number (RFC 7519's
    NumericDate): not a string, not a boolean, not NaN or infinite."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AuthenticationFailed(f"JWT refused: {name} must be a number (a NumericDate)")
        if not math.isfinite(value):
            raise AuthenticationFailed(f"JWT refused: {name} must be a finite number")
