"""`/api/v1/docs` works without internet access: Swagger UI's assets come from the service."""

from __future__ import annotations

import re

from chatservice.main import create_app
from tests.service.harness import make_settings, serve

DOCS = "/api/v1/docs"
# Attribute values and the JavaScript string literals the page's inline script passes on.
REFERENCE = re.compile(
    r"""(?:src|href)="([^"]+)"|(?:url|oauth2RedirectUrl)\s*:\s*[^'"\n]*['"]([^'"]+)['"]"""
)


async def test_the_docs_page_references_no_other_host(sqlite_url: str) -> None:
    async with serve(create_app(make_settings(sqlite_url))) as http:
        page = await http.get(DOCS)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "://" not in page.text, "the docs page loads something from another host"
        references = {a or b for a, b in REFERENCE.findall(page.text)}
        assert f"{DOCS}/assets/swagger-ui-bundle.js" in references
        assert f"{DOCS}/assets/swagger-ui.css" in references
        assert "/api/v1/openapi.json" in references


async def test_the_docs_assets_and_schema_are_served(sqlite_url: str) -> None:
    expected = {
        f"{DOCS}/assets/swagger-ui-bundle.js": "javascript",
        f"{DOCS}/assets/swagger-ui.css": "text/css",
        f"{DOCS}/assets/favicon.png": "image/png",
        "/api/v1/openapi.json": "application/json",
    }
    async with serve(create_app(make_settings(sqlite_url))) as http:
        page = (await http.get(DOCS)).text
        for url, content_type in expected.items():
            assert url in page
            response = await http.get(url)
            assert response.status_code == 200, url
            assert content_type in response.headers["content-type"], url
            assert len(response.content) > 500, url
        schema = (await http.get("/api/v1/openapi.json")).json()
        assert schema["openapi"].startswith("3.1")
        assert "/api/v1/chat/completions" in schema["paths"]
