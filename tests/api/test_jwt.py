"""The ``jwt`` auth backend: good tokens pass, and every classic attack is a 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from taskrt.auth import AuthContext, Credentials, Role
from taskrt.exceptions import ConfigurationError
from taskrt.settings import load_settings
from taskrt_plugins.jwt_backend import JwtBackend
from tests.api.conftest import Api

pytestmark = pytest.mark.services

ISSUER = "https://issuer.example"
AUDIENCE = "taskrt-api"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    body = {"sub": "alice", "role": "admin", "exp": int(time.time()) + 600, "iss": ISSUER}
    body["aud"] = AUDIENCE
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def _forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, str]:
    """A private key (PEM bytes) and its public key (PEM text)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture
def rs_api(make_api: Callable[..., Api], rsa_keys: tuple[bytes, str]) -> Api:
    """The app with the RS256 backend, issuer and audience configured."""
    return make_api(
        jwt_secret=None, jwt_public_key=rsa_keys[1], jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )


def _status(api: Api, token: str) -> int:
    response = api.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def test_a_valid_rs256_token_is_accepted_with_its_role(rs_api: Api, rsa_keys: Any) -> None:
    token = jwt.encode(_claims(role="reader"), rsa_keys[0], algorithm="RS256")
    assert _status(rs_api, token) == 200
    forbidden = rs_api.client.post(
        "/api/v1/queues/q/pause", headers={"Authorization": f"Bearer {token}"}
    )
    assert forbidden.status_code == 403


def _attacks(private_pem: bytes, public_pem: str) -> dict[str, str]:
    good = jwt.encode(_claims(), private_pem, algorithm="RS256")
    head, body, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "alg none": _forge({"alg": "none", "typ": "JWT"}, _claims(), lambda _: b""),
        "alg None spelled differently": _forge({"alg": "NONE"}, _claims(), lambda _: b""),
        "HS256 signed with the RS256 public key": _forge(
            {"alg": "HS256", "typ": "JWT"},
            _claims(),
            lambda data: hmac.new(public_pem.encode(), data, hashlib.sha256).digest(),
        ),
        "missing exp": jwt.encode(_claims(exp=None), private_pem, algorithm="RS256"),
        "expired": jwt.encode(_claims(exp=int(time.time()) - 5), private_pem, algorithm="RS256"),
        "wrong aud": jwt.encode(_claims(aud="someone-else"), private_pem, algorithm="RS256"),
        "missing aud": jwt.encode(_claims(aud=None), private_pem, algorithm="RS256"),
        "wrong iss": jwt.encode(_claims(iss="https://evil.example"), private_pem, "RS256"),
        "altered signature": f"{head}.{body}.{flipped}",
        "altered claims": f"{head}.{_b64(json.dumps(_claims(role='admin', sub='eve')).encode())}"
        f".{signature}",
        "signed by another key": jwt.encode(_claims(), other_key, algorithm="RS256"),
        "unknown role": jwt.encode(_claims(role="root"), private_pem, algorithm="RS256"),
        "no role": jwt.encode(_claims(role=None), private_pem, algorithm="RS256"),
        "no sub": jwt.encode(_claims(sub=None), private_pem, algorithm="RS256"),
        "not yet valid": jwt.encode(
            _claims(nbf=int(time.time()) + 600), private_pem, algorithm="RS256"
        ),
    }


def test_every_attack_on_rs256_is_refused_with_401(rs_api: Api, rsa_keys: Any) -> None:
    statuses = {name: _status(rs_api, token) for name, token in _attacks(*rsa_keys).items()}
    assert statuses == dict.fromkeys(statuses, 401)
    # and a real token still works, so the 401s are not from a broken setup
    assert _status(rs_api, jwt.encode(_claims(), rsa_keys[0], algorithm="RS256")) == 200


def test_hs256_accepts_its_secret_and_refuses_the_rest(api: Api) -> None:
    assert _status(api, api.jwt("reader")) == 200
    assert (
        _status(api, api.jwt("reader", secret="another-secret-that-is-also-32-bytes-long")) == 401
    )
    assert _status(api, _forge({"alg": "none"}, _claims(aud=None), lambda _: b"")) == 401
    assert _status(api, api.jwt("reader", exp=None)) == 401
    # a token with an audience is refused when no audience is configured
    assert _status(api, api.jwt("reader", aud="anything")) == 401


def test_a_bearer_token_that_is_not_a_jwt_is_left_to_the_next_backend(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(auth_backends=["jwt", "apikey"])
    key = api.key("reader")
    assert (
        api.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )
    assert (
        api.client.get("/api/v1/tasks", headers={"Authorization": "Bearer a.b.c"}).status_code
        == 401
    )


def test_refusal_reasons_are_logged_but_not_sent(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="taskrt.api.auth"):
        response = api.client.get(
            "/api/v1/tasks", headers={"Authorization": f"Bearer {api.jwt(exp=1)}"}
        )
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid credentials"
    assert "expired" in caplog.text.lower()


def _backend(**settings: Any) -> JwtBackend:
    return JwtBackend.from_context(
        AuthContext(settings=load_settings(**settings), store=None)  # type: ignore[arg-type]
    )


def test_configuration_errors_are_reported(tmp_path: Path, rsa_keys: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"TASKRT_JWT_SECRET .* or TASKRT_JWT_PUBLIC_KEY"):
        _backend()
    with pytest.raises(ConfigurationError, match="not both"):
        _backend(jwt_secret="s" * 40, jwt_public_key=rsa_keys[1])
    with pytest.raises(ConfigurationError, match="too short"):
        _backend(jwt_secret="short")
    with pytest.raises(ConfigurationError, match="PEM"):
        _backend(jwt_public_key=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="PEM public key"):
        _backend(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_the_public_key_may_be_a_file_path(tmp_path: Path, rsa_keys: Any) -> None:
    path = tmp_path / "jwt.pem"
    path.write_text(rsa_keys[1])
    backend = _backend(jwt_public_key=str(path), jwt_role_claim="taskrt_role")
    token = jwt.encode(
        {"sub": "svc", "taskrt_role": "producer", "exp": int(time.time()) + 60},
        rsa_keys[0],
        algorithm="RS256",
    )
    identity = backend.authenticate(Credentials({"authorization": f"Bearer {token}"}))
    assert identity is not None
    assert (identity.subject, identity.role, identity.backend) == ("svc", Role.PRODUCER, "jwt")


# --- tenants --------------------------------------------------------------------------------


def _tenant_api(make_api: Callable[..., Api], **settings: Any) -> Api:
    from tests.support.tenants import create_tenant

    api = make_api(**settings)
    create_tenant(api.store.engine, "acme")
    return api


def _whoami(api: Api, token: str) -> tuple[int, str | None]:
    """Status of a task creation with ``token``, and the tenant the task landed in."""
    response = api.client.post(
        "/api/v1/tasks", json={"name": "example.echo"}, headers={"Authorization": f"Bearer {token}"}
    )
    if response.status_code != 201:
        return response.status_code, None
    with api.store.engine.connect() as conn:
        task_id = uuid.UUID(response.json()["id"])
        tenant = conn.execute(sa.text("SELECT tenant FROM tasks WHERE id = :id"), {"id": task_id})
        return 201, tenant.scalar_one()


def test_the_tenant_claim_binds_the_token_to_its_tenant(make_api: Callable[..., Api]) -> None:
    api = _tenant_api(make_api)
    assert _whoami(api, api.jwt("producer", tenant="acme")) == (201, "acme")
    # no claim: the default tenant (single-tenant deployments keep working)
    assert _whoami(api, api.jwt("producer")) == (201, "default")
    assert _whoami(api, api.jwt("producer", tenant="default")) == (201, "default")


@pytest.mark.parametrize("tenant", ["nowhere", "Not A Name", 42, "", "a/b"])
def test_a_tenant_claim_naming_no_tenant_is_a_401(
    make_api: Callable[..., Api], tenant: Any
) -> None:
    api = _tenant_api(make_api)
    response = api.client.get(
        "/api/v1/tasks", headers={"Authorization": f"Bearer {api.jwt('admin', tenant=tenant)}"}
    )
    assert response.status_code == 401  # the reason goes to the log, not to the caller


def test_require_tenant_refuses_tokens_without_the_claim(make_api: Callable[..., Api]) -> None:
    api = _tenant_api(make_api, jwt_require_tenant=True)
    response = api.client.get(
        "/api/v1/tasks", headers={"Authorization": f"Bearer {api.jwt('admin')}"}
    )
    assert response.status_code == 401
    assert _whoami(api, api.jwt("producer", tenant="acme")) == (201, "acme")


def test_the_tenant_claim_name_is_a_setting(make_api: Callable[..., Api]) -> None:
    api = _tenant_api(make_api, jwt_tenant_claim="org")
    assert _whoami(api, api.jwt("producer", org="acme")) == (201, "acme")
    # the default claim name means nothing now
    assert _whoami(api, api.jwt("producer", tenant="acme")) == (201, "default")


def test_a_jwt_operator_may_choose_the_tenant(make_api: Callable[..., Api]) -> None:
    api = _tenant_api(make_api)
    headers = {"Authorization": f"Bearer {api.jwt('operator')}", "X-Taskrt-Tenant": "acme"}
    response = api.client.post("/api/v1/tasks", json={"name": "example.echo"}, headers=headers)
    assert response.status_code == 201
    admin = {"Authorization": f"Bearer {api.jwt('admin')}", "X-Taskrt-Tenant": "acme"}
    assert api.client.get("/api/v1/tasks", headers=admin).status_code == 403


def test_a_subject_outside_the_default_tenant_is_named_with_its_tenant() -> None:
    from taskrt.auth import Identity

    assert Identity("alice", Role.ADMIN, "jwt").principal == "jwt:alice"
    assert Identity("alice", Role.ADMIN, "jwt", tenant="acme").principal == "jwt:acme/alice"
    keyed = Identity("ci", Role.ADMIN, "apikey", credential="1f2e3d4c", tenant="acme")
    assert keyed.principal == "apikey:1f2e3d4c"


@pytest.mark.parametrize(
    ("claims", "settings", "reason"),
    [
        ({}, {"require_tenant": True}, r"claim .tenant. \(the tenant\) is required"),
        ({"tenant": "Bad Name"}, {}, "claim 'tenant' must be a tenant name"),
        ({"tenant": 7}, {}, "claim 'tenant' must be a tenant name"),
        ({"tenant": "nowhere"}, {}, "no tenant 'nowhere'"),
        ({"org": "nowhere"}, {"tenant_claim": "org"}, "no tenant 'nowhere'"),
    ],
)
def test_why_a_tenant_claim_is_refused(
    claims: dict[str, Any], settings: dict[str, Any], reason: str
) -> None:
    from taskrt.auth import AuthenticationFailed
    from tests.api.conftest import JWT_SECRET

    backend = JwtBackend(JWT_SECRET, "HS256", tenant_exists={"acme"}.__contains__, **settings)
    body = {"sub": "alice", "role": "admin", "exp": int(time.time()) + 60, **claims}
    token = jwt.encode(body, JWT_SECRET, "HS256")
    with pytest.raises(AuthenticationFailed, match=reason):
        backend.authenticate(Credentials({"authorization": f"Bearer {token}"}))
    good = jwt.encode({**body, settings.get("tenant_claim", "tenant"): "acme"}, JWT_SECRET)
    identity = backend.authenticate(Credentials({"authorization": f"Bearer {good}"}))
    assert identity is not None
    assert identity.tenant == "acme"
