"""import_catalog reads local images only from regular files under the import root.

Anything else (outside the root, a symlink or `..` leading out, a device, a FIFO, a folder,
a missing or unreadable file) is refused with one message, whatever the reason, and nothing
of it reaches MEDIA_ROOT.
"""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path

import pytest
from django.core.management import call_command

from catalog.models import Product
from tests.support.images import image_bytes
from tests.support.imports import run_import as run

pytestmark = pytest.mark.django_db(transaction=True)


def refusal(source: str) -> str:
    return f"image path refused: {source} is not a file under the import root"


def media_files(media: Path) -> list[Path]:
    return sorted(p for p in media.rglob("*") if p.is_file())


@pytest.fixture
def places(tmp_path, settings):
    """An import root with good images in it, and good images and secrets outside it."""
    root = tmp_path / "import"
    (root / "sub").mkdir(parents=True)
    (root / "folder").mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "inside.png").write_bytes(image_bytes("PNG"))
    (root / "sub" / "nested.jpg").write_bytes(image_bytes("JPEG", colour=(10, 200, 10)))
    (outside / "outside.png").write_bytes(image_bytes("PNG", colour=(10, 10, 200)))
    secret = outside / "shadow"
    secret.write_bytes(image_bytes("PNG", colour=(90, 90, 90)))  # even a readable image
    secret.chmod(0)
    (root / "link.png").symlink_to(outside / "outside.png")
    (root / "linked-dir").symlink_to(outside)
    os.mkfifo(root / "pipe.png")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "sock.png"))  # opening it fails even for root (ENXIO)
    settings.IMPORT_ROOT = root
    settings.MEDIA_ROOT = tmp_path / "media"
    yield root, outside
    listener.close()
    secret.chmod(0o600)


def test_only_regular_files_under_the_root_are_read(places, tmp_path):
    root, outside = places
    sources = [
        str(root / "inside.png"),  # 1: absolute, inside
        "sub/nested.jpg",  # 2: relative to the root
        "sub/../inside.png",  # 3: `..` that stays inside (same image as 1: not added twice)
        str(outside / "outside.png"),  # 4: outside
        "../elsewhere/outside.png",  # 5: `..` leading out
        "link.png",  # 6: a symlink inside pointing outside
        "linked-dir/outside.png",  # 7: through a symlinked folder
        "/dev/zero",  # 8: a device
        str(outside / "shadow"),  # 9: unreadable, outside
        "missing.png",  # 10: missing
        "pipe.png",  # 11: a FIFO (must not block)
        "folder",  # 12: a folder
        str(root),  # 13: the root itself
        "/etc/passwd",  # 14: exists, outside
        "sock.png",  # 15: a socket: cannot be opened
    ]
    rows = [
        {"sku": f"P-{i}", "title": "t", "price": 1, "images": [s]}
        for i, s in enumerate(sources, start=1)
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    output, rejects = run(manifest)

    assert "created 3, updated 0, unchanged 0, rejected 12" in output
    assert rejects == {line: refusal(sources[line - 1]) for line in range(4, 16)}
    assert f"(the import root is {root})" in output
    assert set(Product.objects.values_list("sku", flat=True)) == {"P-1", "P-2", "P-3"}
    stored = media_files(tmp_path / "media")
    assert len(stored) == 3  # P-1, P-2 and P-3's images: nothing else was copied
    assert sorted(p.read_bytes() for p in stored) == sorted(
        [image_bytes("PNG"), image_bytes("PNG"), image_bytes("JPEG", colour=(10, 200, 10))]
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_inside_the_root_gets_the_same_message(places, tmp_path):
    root, _ = places
    locked = root / "locked.png"
    locked.write_bytes(image_bytes("PNG"))
    locked.chmod(0)
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text(json.dumps({"sku": "U", "title": "t", "price": 1, "images": [str(locked)]}))
    try:
        _, rejects = run(manifest)
    finally:
        locked.chmod(0o600)
    assert rejects == {1: refusal(str(locked))}


def test_the_image_root_option_replaces_the_setting(places, tmp_path):
    _, outside = places
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(f"sku,title,price,images\nO-1,t,1,outside.png\nO-2,t,1,{outside}/x.png\n")
    output, rejects = run(manifest, "--image-root", str(outside))
    assert "created 1, updated 0, unchanged 0, rejected 1" in output
    assert rejects == {3: refusal(f"{outside}/x.png")}
    assert Product.objects.get(sku="O-1").images.count() == 1


def test_the_demo_catalog_imports_its_own_images(tmp_path, settings):
    settings.IMPORT_ROOT = tmp_path / "import"
    settings.MEDIA_ROOT = tmp_path / "media"
    out = io.StringIO()
    call_command("make_demo_catalog", "--n", "3", stdout=out, verbosity=0)
    assert (tmp_path / "import" / "demo" / "catalog.jsonl").is_file()
    assert "created 3, updated 0, unchanged 0, rejected 0" in out.getvalue()
    assert all(p.images.exists() for p in Product.objects.all())

    elsewhere = tmp_path / "bench-scratch"
    out = io.StringIO()
    call_command("make_demo_catalog", "--n", "3", "--out", str(elsewhere), stdout=out)
    assert "created 0, updated 0, unchanged 3, rejected 0" in out.getvalue()
