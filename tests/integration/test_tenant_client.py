"""The Python client acts in one tenant: ``Client(tenant=...)``, else the ``tenant`` setting;
the default client follows the tenant of the handler it runs in."""

from __future__ import annotations

import asyncio

import pytest

from taskrt.client import AsyncClient, Client, default_client
from taskrt.context import current_tenant
from taskrt.exceptions import NotFoundError, UnknownTenantError, ValidationError
from taskrt.settings import Settings, load_settings
from tests.support.tenants import create_tenant

pytestmark = pytest.mark.services


@pytest.fixture
def settings(pg_url: str, redis_url: str, redis_prefix: str) -> Settings:
    from taskrt.db.engine import create_engine

    engine = create_engine(pg_url)
    create_tenant(engine, "acme")
    engine.dispose()
    return load_settings(
        database_url=pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
    )


def test_a_client_sees_only_its_tenant(settings: Settings) -> None:
    with Client(settings, tenant="acme") as acme, Client(settings) as default:
        assert (acme.tenant, default.tenant) == ("acme", "default")
        mine = acme.enqueue("example.echo", {"n": 1}, dedup_key="k")
        assert acme.get(mine.id).tenant == "acme"
        with pytest.raises(NotFoundError):
            default.get(mine.id)
        with pytest.raises(NotFoundError):
            default.cancel(mine.id)
        assert default.list_tasks() == []
        # dedup keys are per tenant
        theirs = default.enqueue("example.echo", {"n": 1}, dedup_key="k")
        assert theirs.created
        assert theirs.id != mine.id
        assert [t.id for t in acme.list_tasks()] == [mine.id]


def test_the_tenant_setting_is_the_default(settings: Settings) -> None:
    acme_settings = settings.model_copy(update={"tenant": "acme"})
    with Client(acme_settings) as client:
        assert client.tenant == "acme"
        result = client.enqueue("example.echo")
        assert client.get(result.id).tenant == "acme"


def test_an_unknown_or_malformed_tenant_is_refused(settings: Settings) -> None:
    with (
        Client(settings, tenant="nowhere") as client,
        pytest.raises(UnknownTenantError, match="nowhere"),
    ):
        client.enqueue("example.echo")
    with (
        Client(settings, tenant="Not A Name") as client,
        pytest.raises(ValidationError, match="not a tenant name"),
    ):
        client.list_tasks()


def test_the_async_client_forwards_its_tenant(settings: Settings) -> None:
    async def main() -> None:
        async with AsyncClient(settings, tenant="acme") as client:
            assert client.tenant == "acme"
            result = await client.enqueue("example.echo")
            assert (await client.get(result.id)).tenant == "acme"

    asyncio.run(main())


def test_the_default_client_follows_the_running_handler(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskrt.client as client_module

    monkeypatch.setattr(client_module, "_default", None)
    monkeypatch.setattr(client_module, "load_settings", lambda: settings)
    client = default_client()
    try:
        assert client.tenant == "default"
        token = current_tenant.set("acme")
        try:
            assert client.tenant == "acme"
            child = client.enqueue("example.echo")
        finally:
            current_tenant.reset(token)
        assert client.tenant == "default"
        with pytest.raises(NotFoundError):
            client.get(child.id)
        with Client(settings, tenant="acme") as acme:
            assert acme.get(child.id).tenant == "acme"
    finally:
        client.close()
