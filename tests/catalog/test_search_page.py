"""The search page in a real headless Chromium, against real workers (tiny CLIP)."""

from __future__ import annotations

import shutil
import time
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Category, IndexState, Product
from catalog.services.images import image_add_upload
from catalog.services.products import product_create
from tests.support.images import image_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (.ci/install-browser installs it)"
)
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt install chromium)"),
]
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 210, 30)]


@pytest.fixture
def catalog(shard_workers):
    category = Category.objects.create(name="Balls", slug="balls")
    ids = []
    for n, colour in enumerate(COLOURS):
        product = product_create(
            sku=f"WEB-{n}", title=f"Ball {n}", price=Decimal(10 + n), category=category
        )
        upload = SimpleUploadedFile(f"{n}.png", image_bytes("PNG", colour=colour), "image/png")
        image_add_upload(product=product, upload=upload)
        ids.append(product.pk)
    deadline = time.monotonic() + 90
    while set(Product.objects.values_list("index_state", flat=True)) != {IndexState.INDEXED}:
        assert time.monotonic() < deadline, "catalog was not indexed in time"
        time.sleep(0.2)
    return ids


@pytest.fixture
def page(live_server):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(live_server.url + "/")
        yield page
        browser.close()


def result_ids(page) -> list[int]:
    return [
        int(x)
        for x in page.eval_on_selector_all(
            "#results .result", "nodes => nodes.map(n => n.dataset.productId)"
        )
    ]


def test_text_photo_and_more_like_this(catalog, page, tmp_path):
    # Type a query, see results.
    page.fill("#q", "a ball")
    page.click("#go")
    page.wait_for_selector("#results .result")
    assert len(result_ids(page)) == len(catalog)
    assert "results for" in page.inner_text("#status")

    # Upload a product's photo: that product comes first.
    photo = tmp_path / "query.png"
    photo.write_bytes(image_bytes("PNG", colour=COLOURS[2]))
    page.set_input_files("#photo", str(photo))
    page.wait_for_function("document.querySelector('#status').textContent.includes('your photo')")
    assert result_ids(page)[0] == catalog[2]

    # More like this on the first result: results for that product, without it.
    page.click("#results .result >> nth=0 >> .similar")
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('products like')"
    )
    assert catalog[2] not in result_ids(page)
    assert result_ids(page)
    assert page.is_hidden("#partial")
