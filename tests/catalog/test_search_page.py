"""The shopper's pages in a real headless Chromium, against real workers (tiny CLIP)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Category
from catalog.services.images import image_add_upload
from catalog.services.products import product_create
from tests.support.images import image_bytes
from tests.support.indexing import wait_searchable

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
            sku=f"WEB-{n}",
            title=f"Ball {n}",
            price=Decimal(10 + n),
            category=category,
            brand="Orbit",
        )
        upload = SimpleUploadedFile(f"{n}.png", image_bytes("PNG", colour=colour), "image/png")
        image_add_upload(product=product, upload=upload)
        ids.append(product.pk)
    wait_searchable()
    return ids


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
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
        yield chromium
        chromium.close()


@pytest.fixture
def page(live_server, browser):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(live_server.url + "/")
    return page


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


VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


def fits(page, width: int) -> None:
    """No horizontal scrolling: nothing on the page is wider than the window."""
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page scrolls sideways: {scroll_width} > {width}"


def in_view(page, selector: str, size: tuple[int, int]) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= 0
    assert box["y"] >= 0, box
    assert box["x"] + box["width"] <= size[0], (selector, box)
    assert box["y"] + box["height"] <= size[1], (selector, box)


def test_search_then_product_pages_at_desktop_and_phone_sizes(
    catalog, live_server, browser, tmp_path
):
    for name, size in VIEWPORTS.items():
        phone = name == "phone"
        context = browser.new_context(
            viewport={"width": size[0], "height": size[1]}, is_mobile=phone, has_touch=phone
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(live_server.url + "/")
        in_view(page, "#q", size)
        in_view(page, "#go", size)
        fits(page, size[0])
        # The tiny random model answers here: the page says its results mean nothing.
        assert "results are not meaningful" in page.inner_text("#model-warning")
        assert page.locator("#admin-link").count() == 0  # staff only
        assert page.locator("#flower-link").count() == 0

        page.fill("#q", "a ball")
        page.click("#go")
        page.wait_for_selector("#results .result")
        assert sorted(result_ids(page)) == sorted(catalog)
        assert "score" not in page.inner_text("#results").lower()
        fits(page, size[0])
        boxes = [r.bounding_box() for r in page.locator("#results .result").all()]
        if phone:  # two columns: the first two side by side, the third below them
            assert boxes[0]["y"] == boxes[1]["y"]
            assert boxes[1]["x"] > boxes[0]["x"] + boxes[0]["width"] - 1
            assert boxes[2]["y"] > boxes[0]["y"]
        else:
            assert len({box["y"] for box in boxes}) == 1  # one row of four
        page.screenshot(path=str(tmp_path / f"{name}-results.png"), full_page=True)

        # A result leads to its product page, in HTML, with more like it.
        first = page.locator("#results .result >> nth=0 >> .title")
        title = first.inner_text()
        first.click()
        page.wait_for_url("**/products/*/")
        assert page.inner_text("h1") == title
        assert "Orbit" in page.inner_text(".facts")
        assert "Balls" in page.inner_text(".facts")
        assert page.locator("#main-image").evaluate("img => img.naturalWidth") > 0
        page.wait_for_selector("#similar .result")
        others = [t.inner_text() for t in page.locator("#similar .title").all()]
        assert title not in others
        assert len(others) == len(catalog) - 1
        fits(page, size[0])
        page.screenshot(path=str(tmp_path / f"{name}-product.png"), full_page=True)
        page.locator("#similar .title >> nth=0").click()
        page.wait_for_function(f"document.querySelector('h1').textContent !== {title!r}")
        assert page.inner_text("h1") in others

        # Back to the search: the address kept it, so the results come back.
        page.go_back()
        page.wait_for_function(f"document.querySelector('h1').textContent === {title!r}")
        assert "q=a+ball" in page.get_attribute("#back", "href")
        page.click("#back")
        page.wait_for_selector("#results .result")
        assert page.input_value("#q") == "a ball"
        context.close()


@pytest.fixture
def doomed_category(catalog):
    """A category the page lists (made before the browser starts: playwright's event loop
    keeps the ORM out of the test's own thread)."""
    return Category.objects.create(name="Gone", slug="gone")


def in_thread(call):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def test_refusals_and_empty_answers_read_as_plain_language(
    catalog, doomed_category, page, tmp_path
):

    page.fill("#q", "a ball")
    page.fill("#min_price", "50")
    page.fill("#max_price", "10")
    page.click("#go")
    assert page.inner_text("#error") == "The maximum price must be at least the minimum price."

    # Refused by the API (the category went meanwhile): said without its field names.
    page.fill("#min_price", "")
    page.fill("#max_price", "")
    page.select_option("#category", "gone")
    in_thread(doomed_category.delete)
    page.click("#go")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert message == "That category is not available any more. Please pick another one."

    # Nothing matches: a friendly empty state, not a bare "0 results".
    page.select_option("#category", "")
    page.fill("#max_price", "1")
    page.click("#go")
    page.wait_for_selector("#empty:not([hidden])")
    assert "No products match “a ball”" in page.inner_text("#empty")
    assert page.is_hidden("#error")
    assert result_ids(page) == []
    page.screenshot(path=str(tmp_path / "empty.png"), full_page=True)


SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "out" / "screenshots"
BRANDS = ["Aster", "Orbit", "Lumen"]


@pytest.fixture
def big_catalog(shard_workers):
    """26 products: more than one page of 24, three brands, two categories."""
    categories = [
        Category.objects.create(name="Balls", slug="balls"),
        Category.objects.create(name="Mugs", slug="mugs"),
    ]
    for n in range(26):
        product = product_create(
            sku=f"BIG-{n}",
            title=f"{'Ball' if n % 2 else 'Mug'} {n}",
            price=Decimal(5 + 7 * n),
            category=categories[(n + 1) % 2],  # the balls in Balls
            brand=BRANDS[n % 3],
            in_stock=n % 5 != 0,
        )
        colour = COLOURS[n % len(COLOURS)]
        upload = SimpleUploadedFile(f"{n}.png", image_bytes("PNG", colour=colour), "image/png")
        image_add_upload(product=product, upload=upload)
    wait_searchable()


def prices(page) -> list[float]:
    texts = page.eval_on_selector_all(
        "#results .result .price", "nodes => nodes.map(n => n.textContent)"
    )
    return [float(text.split()[0]) for text in texts]


def test_facets_pages_and_sorting_at_desktop_and_phone_sizes(big_catalog, live_server, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, size in VIEWPORTS.items():
        phone = name == "phone"
        context = browser.new_context(
            viewport={"width": size[0], "height": size[1]}, is_mobile=phone, has_touch=phone
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(live_server.url + "/?q=ball")
        page.wait_for_selector("#results .result")
        first = result_ids(page)
        assert len(first) == 24
        assert page.inner_text("#status").startswith("26 results for")
        assert page.inner_text("#page-of") == "Page 1 of 2"
        in_view(page, "#q", size)
        in_view(page, "#go", size)
        assert page.is_visible("#facets")
        if phone:  # folded above the results, so the results start near the top
            assert not page.locator("#facets-box").evaluate("d => d.open")
            page.click("#facets-box summary")
        groups = page.eval_on_selector_all(".facet-group", "g => g.map(n => n.dataset.facet)")
        assert groups == ["category", "brand", "price", "in_stock"]
        text = page.inner_text("#facets")
        assert "Aster (9)" in text
        assert "Orbit (9)" in text
        assert "Lumen (8)" in text
        assert "score" not in page.inner_text("main").lower()
        assert not [p for p in prices(page) if p < 0]
        fits(page, size[0])
        page.screenshot(path=str(SCREENSHOTS / f"search-facets-{name}.png"), full_page=True)

        # The next page: the two others, and the address keeps it.
        page.click("#next")
        page.wait_for_function("document.querySelector('#page-of').textContent === 'Page 2 of 2'")
        second = result_ids(page)
        assert len(second) == 2
        assert not set(first) & set(second)
        assert "page=2" in page.url
        page.screenshot(path=str(SCREENSHOTS / f"search-page2-{name}.png"), full_page=True)

        # A brand from the facets: its products only, named above the results.
        page.click(".facet-group[data-facet=brand] button:has-text('Lumen')")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('8 ')")
        assert page.is_visible("#chosen")
        assert "Lumen" in page.inner_text("#chosen")
        assert "brand=Lumen" in page.url
        assert page.is_hidden("#pager")  # one page now

        # Dearest first.
        page.select_option("#sort", "-price")
        page.wait_for_function("location.search.includes('sort=-price')")
        page.wait_for_selector("#results .result")
        shown = prices(page)
        assert shown == sorted(shown, reverse=True)
        assert len(shown) == 8
        fits(page, size[0])
        page.screenshot(path=str(SCREENSHOTS / f"search-brand-sorted-{name}.png"), full_page=True)

        # Clearing the brand brings every brand back.
        page.click("#clear-brand")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('26 ')")

        # Nothing matches: a friendly empty state. A page past the end: said in words.
        page.goto(live_server.url + "/?q=ball&brand=Nobody")
        page.wait_for_selector("#empty:not([hidden])")
        assert "No products match" in page.inner_text("#empty")
        page.screenshot(path=str(SCREENSHOTS / f"search-empty-{name}.png"), full_page=True)
        page.goto(live_server.url + "/?q=ball&page=999")
        page.wait_for_selector("#error:not([hidden])")
        assert "past the end of the results" in page.inner_text("#error")
        fits(page, size[0])
        page.screenshot(path=str(SCREENSHOTS / f"search-error-{name}.png"), full_page=True)
        context.close()
