"""import_catalog: upsert by sku, rejected rows with reasons, encoding queued in chunks."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from catalog.models import Category, IndexState, Product
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def run(path) -> str:
    """Import with the manifest's folder as the import root (the tests' images lie there)."""
    out = io.StringIO()
    call_command(
        "import_catalog",
        str(path),
        "--chunk-size",
        "2",
        "--image-root",
        str(path.parent),
        stdout=out,
        verbosity=0,
    )
    return out.getvalue()


def queued_encode_tasks(redis_client) -> list[list[int]]:
    """The encode tasks waiting on the private broker (kombu keeps a list per queue)."""
    tasks = []
    for raw in redis_client.lrange("encode", 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        tasks.append(args[0])
    return tasks


def test_jsonl_import_upserts_and_reports(tmp_path, redis_client):
    photo = tmp_path / "lamp.png"
    photo.write_bytes(image_bytes("PNG"))
    rows = [
        {
            "sku": "L-1",
            "title": "Desk lamp",
            "price": 19.5,
            "category": "lamps",
            "category_name": "Lamps",
            "images": [str(photo)],
        },
        {
            "sku": "L-2",
            "title": "Floor lamp",
            "price": "49.00",
            "category": "lamps",
            "in_stock": False,
            "images": ["https://img.example.com/l2.jpg"],
        },
        {"sku": "L-3", "title": "No price"},
        {"sku": "L-4", "title": "Ghost", "price": 3, "images": [str(tmp_path / "missing.png")]},
        {"sku": "L-5", "title": "Plain", "price": 1},
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")

    output = run(manifest)
    assert "created 3, updated 0, unchanged 0, rejected 3" in output
    assert "line 3: price" in output
    assert f"image path refused: {tmp_path / 'missing.png'} is not a file" in output
    assert "line 6: invalid JSON" in output
    assert Category.objects.get(slug="lamps").name == "Lamps"
    assert Product.objects.get(sku="L-1").images.get().sha256
    assert Product.objects.get(sku="L-2").images.get().source_url.endswith("l2.jpg")
    assert not Product.objects.filter(sku="L-4").exists()  # a rejected row leaves nothing behind
    assert set(Product.objects.values_list("index_state", flat=True)) == {IndexState.PENDING}
    chunks = queued_encode_tasks(redis_client)
    assert sorted(pid for chunk in chunks for pid in chunk) == sorted(
        Product.objects.values_list("pk", flat=True)
    )

    rows[0]["price"] = 21
    manifest.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n")
    assert "created 0, updated 1, unchanged 1, rejected 0" in run(manifest)
    assert Product.objects.get(sku="L-1").price == Decimal("21.00")
    assert Product.objects.get(sku="L-1").images.count() == 1  # same photo, not added twice


def test_csv_import(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    a.write_bytes(image_bytes("PNG"))
    b.write_bytes(image_bytes("JPEG", colour=(10, 200, 10)))
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "sku,title,price,currency,in_stock,brand,images\n"
        f"C-1,Mug,6.50,eur,true,Orbit,{a}|{b}\n"
        "C-2,Cup,-1,USD,true,Orbit,\n"
    )
    assert "created 1, updated 0, unchanged 0, rejected 1" in run(manifest)
    product = Product.objects.get(sku="C-1")
    assert (product.currency, product.brand, product.images.count()) == ("EUR", "Orbit", 2)


def test_attributes_are_imported_checked_and_kept_when_absent(tmp_path):
    rows = [
        {"sku": "A-1", "title": "Red mug", "price": 5, "attributes": {"colour": "red"}},
        {"sku": "A-2", "title": "t", "price": 5, "attributes": ["red"]},
        {"sku": "A-3", "title": "t", "price": 5, "attributes": {"colour": {"r": 200}}},
        {"sku": "A-4", "title": "t", "price": 5, "attributes": {"x" * 65: 1}},
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    output = run(manifest)
    assert "created 1, updated 0, unchanged 0, rejected 3" in output
    assert "line 2: attributes: must be a JSON object" in output
    assert "line 3: attributes: colour: values are strings, numbers or booleans" in output
    assert "line 4: attributes: names are 1 to 64 characters" in output
    assert Product.objects.get(sku="A-1").attributes == {"colour": "red"}

    # CSV: a cell of JSON; an empty cell (or no column) leaves the attributes alone.
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        'sku,title,price,attributes\nA-1,Red mug,5,\nA-5,Mug,5,"{""colour"": ""blue""}"\n'
        "A-6,Mug,5,{not json\n"
    )
    output = run(manifest)
    assert "created 1, updated 0, unchanged 1, rejected 1" in output
    assert "line 4: attributes: must be a JSON object" in output
    assert Product.objects.get(sku="A-1").attributes == {"colour": "red"}
    assert Product.objects.get(sku="A-5").attributes == {"colour": "blue"}


def test_encode_stale_requeues(tmp_path, redis_client):
    from catalog.services.products import product_create

    stale = product_create(sku="S-1", title="Stale", price=Decimal(1))
    done = product_create(sku="S-2", title="Done", price=Decimal(1))
    Product.objects.filter(pk=done.pk).update(index_state=IndexState.INDEXED)
    redis_client.delete("encode")
    out = io.StringIO()
    call_command("encode", "--stale", stdout=out, verbosity=0)
    assert "queued 1 product(s)" in out.getvalue()
    assert queued_encode_tasks(redis_client) == [[stale.pk]]
