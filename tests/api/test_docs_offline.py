"""``/docs`` works with no network: every script, style sheet and icon the page references is
served by the API itself, from an installed package, never from a CDN."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.services

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
URL_IN_SCRIPT = re.compile(r"""(?:url|openapi_url)\s*:\s*['"]([^'"]+)['"]""")


def test_every_asset_the_docs_page_references_comes_from_the_api(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    referenced = ASSET.findall(page.text) + URL_IN_SCRIPT.findall(page.text)
    assert any(r.endswith(".js") for r in referenced), page.text
    assert any(r.endswith(".css") for r in referenced), page.text
    assert "/openapi.json" in referenced, page.text
    for reference in referenced:
        # no other host: a relative URL resolves against the API's own origin
        assert "//" not in reference, f"{reference} is loaded from another host"
        asset = api.client.get(urljoin("/docs", reference))
        assert asset.status_code == 200, reference
        assert len(asset.content) > 100, reference
    script = api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert b"SwaggerUIBundle" in script.content


def test_the_redoc_page_that_needed_a_cdn_is_gone(api: Api) -> None:
    assert api.client.get("/redoc").status_code == 404
