"""The ``jwt`` auth backend: good tokens pass, and every classic attack is a 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
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
