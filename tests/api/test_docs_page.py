"""/api/docs/ works offline: Swagger UI comes from this site's static files
(drf-spectacular-sidecar), in Chromium with every request elsewhere refused, and the
files are there for WhiteNoise after collectstatic with DEBUG off (make run, compose)."""

from __future__ import annotations

import re
import shutil
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def asset_urls(html: str) -> list[str]:
    """The site's own files a page loads (scripts, styles, icons)."""
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_the_docs_assets_are_served_by_whitenoise_after_collectstatic(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    settings.DEBUG = False
    settings.WHITENOISE_USE_FINDERS = False  # only what collectstatic wrote, as in production
    client = Client()  # a new handler: WhiteNoise reads STATIC_ROOT when it starts
    html = client.get("/api/docs/").content.decode()
    assets = asset_urls(html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in assets), html[:1000]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "the page loads files elsewhere"
    for url in assets:
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content), url


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt install chromium)")
def test_the_docs_render_in_chromium_with_every_other_host_blocked(live_server):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing")
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(None, public=True)
    operations = sum(
        method in {"get", "post", "put", "patch", "delete"}
        for operations in schema["paths"].values()
        for method in operations
    )
    here = urlsplit(live_server.url).netloc
    refused: list[str] = []

    def only_here(route) -> None:
        if urlsplit(route.request.url).netloc == here:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.route("**/*", only_here)
            page.goto(live_server.url + "/api/docs/")
            page.wait_for_selector(".opblock")
            assert page.locator(".opblock").count() == operations
            texts = page.locator(".opblock-summary-path").all_inner_texts()
            paths = [text.replace("\u200b", "") for text in texts]  # its wrapping hints
            assert any("/api/products/{id}/images/" in path for path in paths), paths
            title = page.locator(".info .title").inner_text()
            assert "Visual product search API" in title
        finally:
            browser.close()
    assert refused == [], f"the docs asked other hosts for {refused}"
