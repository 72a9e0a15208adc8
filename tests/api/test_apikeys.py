"""API keys: made by the CLI and shown once, stored only as prefix and hash, checked in the API,
revoked at once; no plaintext key in the database or in any log line."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import sqlalchemy as sa

from taskrt.exceptions import InvalidStateError, NotFoundError
from tests.api.conftest import Api
from tests.support.db import Db
from tests.support.procs import run_cli

pytestmark = pytest.mark.services


def _all_text(db: Db) -> str:
    """Every value of every text-like column of every table, as one string."""
    inspector = sa.inspect(db.engine)
    chunks = []
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if isinstance(column["type"], sa.String | sa.Text | sa.JSON) or "JSON" in str(
                column["type"]
            ):
                for (value,) in db.rows(f'SELECT "{column["name"]}"::text FROM "{table}"'):
                    chunks.append(str(value))
    return "\n".join(chunks)


def test_cli_creates_lists_and_revokes_keys_with_audit_rows(
    service_env: dict[str, str], db: Db
) -> None:
    created = run_cli(["apikey", "create", "--name", "ci", "--role", "producer"], service_env)
    key = created.stdout.strip()
    assert key.startswith("trk_")
    assert len(key) == 56
    assert key not in created.stderr
    assert "cannot be shown again" in created.stderr
    listed = json.loads(run_cli(["apikey", "list", "--json"], service_env).stdout)
    (entry,) = listed
    assert (entry["name"], entry["role"], entry["prefix"]) == ("ci", "producer", key[4:12])
    assert key not in json.dumps(listed)
    assert "key_hash" not in entry
    assert db.scalar("SELECT key_hash FROM api_keys") == hashlib.sha256(key.encode()).hexdigest()

    revoked = run_cli(["apikey", "revoke", entry["id"]], service_env)
    assert "revoked API key" in revoked.stdout
    again = run_cli(["apikey", "revoke", entry["id"]], service_env, check=False)
    assert again.returncode == 1
    assert "already revoked" in again.stderr
    bad = run_cli(["apikey", "revoke", "nope"], service_env, check=False)
    assert bad.returncode == 1
    assert "not an API key id" in bad.stderr

    audit = db.rows("SELECT actor, action, target_id, details FROM audit_log ORDER BY id")
    assert [(r.action, r.target_id) for r in audit] == [
        ("apikey.create", entry["id"]),
        ("apikey.revoke", entry["id"]),
    ]
    assert all(r.actor.startswith("cli:") for r in audit)
    assert audit[0].details == {"name": "ci", "role": "producer", "prefix": key[4:12]}
    assert key not in _all_text(db)


def test_no_plaintext_key_reaches_the_database_or_any_log_line(
    api: Api, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = [api.key(role) for role in ("reader", "producer", "admin")]
    revoked = api.key("admin", name="old")
    (old,) = [k for k in api.store.list_api_keys() if k.name == "old"]
    api.store.revoke_api_key(old.id)
    wrong = f"trk_{keys[0][4:12]}_{'Z' * 43}"
    for key in [*keys, revoked, wrong]:
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
            api.client.get("/api/v1/tasks", headers=headers)
            api.client.post("/api/v1/tasks", json={"name": "example.echo"}, headers=headers)
    statuses = [
        api.client.get("/api/v1/tasks", headers={"X-API-Key": k}).status_code
        for k in [*keys, revoked, wrong]
    ]
    assert statuses == [200, 200, 200, 401, 401]
    stored = _all_text(db)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused credentials" in logged  # the refusals were logged, without the keys
    for key in [*keys, revoked, wrong]:
        secret = key.split("_", 2)[2]
        assert key not in stored
        assert secret not in stored
        assert key not in logged
        assert secret not in logged


def test_last_used_at_is_written_at_most_once_a_minute(api: Api) -> None:
    key = api.key("reader", name="busy")
    assert api.store.list_api_keys()[0].last_used_at is None
    for _ in range(3):
        assert api.client.get("/api/v1/tasks", headers={"X-API-Key": key}).status_code == 200
    first = api.store.list_api_keys()[0].last_used_at
    assert first is not None
    assert api.client.get("/api/v1/queues", headers={"X-API-Key": key}).status_code == 200
    assert api.store.list_api_keys()[0].last_used_at == first
    # the store's own guard, for several API processes: a second touch within the minute is a no-op
    record_id = api.store.list_api_keys()[0].id
    assert api.store.touch_api_key(record_id) is False
    assert api.store.touch_api_key(record_id, min_interval=0) is True


def test_a_revoked_key_stops_working_at_once(api: Api) -> None:
    key = api.key("admin", name="leaked")
    assert api.client.get("/api/v1/audit", headers={"X-API-Key": key}).status_code == 200
    (record,) = [k for k in api.store.list_api_keys() if k.name == "leaked"]
    api.store.revoke_api_key(record.id)
    assert api.client.get("/api/v1/audit", headers={"X-API-Key": key}).status_code == 401


def test_store_refuses_bad_revocations_and_roles(api: Api) -> None:
    import uuid

    from taskrt.exceptions import ValidationError
    from taskrt_plugins.auth_apikey import create_api_key

    with pytest.raises(NotFoundError):
        api.store.revoke_api_key(uuid.uuid4())
    record, _ = create_api_key(api.store, name="x", role="reader")
    api.store.revoke_api_key(record.id)
    with pytest.raises(InvalidStateError):
        api.store.revoke_api_key(record.id)
    with pytest.raises(ValueError, match="root"):
        create_api_key(api.store, name="x", role="root")
    with pytest.raises(ValidationError, match="1 to 200"):
        create_api_key(api.store, name="", role="reader")


def test_cli_keys_are_bound_to_a_tenant(service_env: dict[str, str], db: Db) -> None:
    from tests.support.tenants import create_tenant

    create_tenant(db.engine, "acme")
    create_tenant(db.engine, "bravo")
    made = run_cli(
        ["apikey", "create", "--name", "a", "--role", "admin", "--tenant", "acme", "--json"],
        service_env,
    )
    created = json.loads(made.stdout)
    assert created["tenant"] == "acme"
    # the global --tenant (and TASKRT_TENANT) is the default of the command's --tenant
    run_cli(
        ["--tenant", "bravo", "apikey", "create", "--name", "b", "--role", "reader"], service_env
    )
    run_cli(
        ["apikey", "create", "--name", "c", "--role", "producer"],
        {**service_env, "TASKRT_TENANT": "bravo"},
    )
    rows = db.rows("SELECT name, tenant FROM api_keys ORDER BY name")
    assert [(r.name, r.tenant) for r in rows] == [("a", "acme"), ("b", "bravo"), ("c", "bravo")]
    assert (
        db.scalar(
            "SELECT tenant FROM audit_log WHERE action = 'apikey.create' AND target_id = :id",
            id=created["id"],
        )
        == "acme"
    )

    # listing is per tenant; --all-tenants shows every key with its tenant
    acme = json.loads(run_cli(["apikey", "list", "--tenant", "acme", "--json"], service_env).stdout)
    assert [k["name"] for k in acme] == ["a"]
    default = json.loads(run_cli(["apikey", "list", "--json"], service_env).stdout)
    assert default == []
    every = run_cli(["apikey", "list", "--all-tenants"], service_env).stdout
    assert "acme" in every
    assert "bravo" in every
    both = run_cli(
        ["apikey", "list", "--all-tenants", "--tenant", "acme"], service_env, check=False
    )
    assert both.returncode == 1
    assert "not both" in both.stderr

    # revoking another tenant's key: no such key, and the key keeps working
    other = run_cli(
        ["apikey", "revoke", created["id"], "--tenant", "bravo"], service_env, check=False
    )
    assert other.returncode == 1
    assert "no API key" in other.stderr
    assert db.scalar("SELECT revoked_at FROM api_keys WHERE name = 'a'") is None
    run_cli(["--tenant", "acme", "apikey", "revoke", created["id"]], service_env)
    assert db.scalar("SELECT revoked_at FROM api_keys WHERE name = 'a'") is not None


def test_cli_key_tenant_must_exist_and_operators_live_in_default(
    service_env: dict[str, str], db: Db
) -> None:
    from tests.support.tenants import create_tenant

    create_tenant(db.engine, "acme")
    unknown = run_cli(
        ["apikey", "create", "--name", "x", "--role", "admin", "--tenant", "nowhere"],
        service_env,
        check=False,
    )
    assert unknown.returncode == 1
    assert "unknown tenant 'nowhere'" in unknown.stderr
    malformed = run_cli(
        ["apikey", "create", "--name", "x", "--role", "admin", "--tenant", "No Such"],
        service_env,
        check=False,
    )
    assert malformed.returncode == 1
    assert "not a tenant name" in malformed.stderr
    operator = run_cli(
        ["apikey", "create", "--name", "op", "--role", "operator", "--tenant", "acme"],
        service_env,
        check=False,
    )
    assert operator.returncode == 1
    assert "operator key acts in every tenant" in operator.stderr
    assert db.scalar("SELECT count(*) FROM api_keys") == 0
    made = run_cli(
        ["apikey", "create", "--name", "op", "--role", "operator", "--json"], service_env
    )
    assert json.loads(made.stdout)["role"] == "operator"
