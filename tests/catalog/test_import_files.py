"""import_catalog never fails on a file's content: each bad record is a reject with its line.

The real command runs on real files whose bad records (a field over the csv module's default
128 KiB limit, invalid UTF-8, NUL bytes, huge lines, JSON the parser cannot take) sit between
valid rows in the same chunk; the valid rows must all be there afterwards.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection

from catalog.models import Product
from catalog.services.import_files import MAX_FIELD_CHARS, MAX_LINE_CHARS
from tests.support.imports import run_import as run

pytestmark = pytest.mark.django_db(transaction=True)


def skus() -> set[str]:
    return set(Product.objects.values_list("sku", flat=True))


def test_csv_bad_records_are_rejected_by_line_and_the_rest_kept(tmp_path):
    over = "y" * (MAX_FIELD_CHARS + 10)
    lines = [
        b"\xef\xbb\xbfsku,title,price,description",  # 1: header after a byte order mark
        b"A-1,One,1,short",  # 2
        b"A-2,Two,2," + b"x" * 200_000,  # 3: over the csv module's 128 KiB default: fine
        b"A-3,Three,3," + over.encode(),  # 4: over our field limit
        b'A-4,Four,4,"multi',  # 5-7: one record over three lines
        b"line",
        b'desc"',
        b"A-5,Five,5,caf\xff",  # 8: invalid UTF-8
        b"A-6,Six\x00,6,nul",  # 9: a NUL byte
        b'A-7,Seven,7,"' + over.encode(),  # 10-12: an over-long quoted field over 3 lines,
        b"X-1,Fake,1,looks like a row",  # whose lines must not become rows
        b'still the same field"',
        b'A-8,Eight,8,"said ""hi"""',  # 13
        b"",  # 14: blank
        b"A-9,Nine,-1",  # 15: invalid price, missing trailing column
        b"A-10,Ten,10," + b"q" * (MAX_LINE_CHARS + 5),  # 16: a line over the line limit
        b'A-11,Eleven,11,"' + b"q" * (MAX_LINE_CHARS + 5),  # 17-19: the same, quoted
        b"X-2,Fake,2",
        b'end"',
        b"A-12,Twelve,12,last",  # 20, no newline at the end
    ]
    manifest = tmp_path / "catalog.csv"
    manifest.write_bytes(b"\r\n".join(lines))

    output, rejects = run(manifest)

    assert "created 5, updated 0, unchanged 0, rejected 7" in output
    assert skus() == {"A-1", "A-2", "A-4", "A-8", "A-12"}
    assert Product.objects.get(sku="A-2").description == "x" * 200_000
    assert Product.objects.get(sku="A-4").description == "multi\r\nline\r\ndesc"
    assert Product.objects.get(sku="A-8").description == 'said "hi"'
    assert sorted(rejects) == [4, 8, 9, 10, 15, 16, 17]
    assert rejects[4] == rejects[10] == f"a field is longer than {MAX_FIELD_CHARS} characters"
    assert rejects[8] == "invalid UTF-8"
    assert "Null characters are not allowed" in rejects[9]
    assert rejects[15].startswith("price:")
    assert rejects[16] == rejects[17] == f"a line is longer than {MAX_LINE_CHARS} characters"


def test_csv_header_that_cannot_be_read_is_one_reject(tmp_path):
    manifest = tmp_path / "catalog.csv"
    manifest.write_bytes(b"sku,t\xfftle,price\nB-1,One,1\n")
    output, rejects = run(manifest)
    assert "created 0, updated 0, unchanged 0, rejected 1" in output
    assert rejects == {1: "invalid UTF-8 in the header"}


def test_jsonl_bad_lines_are_rejected_by_line_and_the_rest_kept(tmp_path):
    def row(sku: str, **fields: object) -> bytes:
        return json.dumps({"sku": sku, "title": "t", "price": 1, **fields}).encode()

    lines = [
        b"\xef\xbb\xbf" + row("J-1"),  # 1: after a byte order mark
        b'{"sku": "J-2", "title": "caf\xe9", "price": 1}',  # 2: invalid UTF-8
        row("J-3", title="a\u0000b"),  # 3: a NUL character
        b'{"sku": "J-4", "title": "\\udc80", "price": 1}',  # 4: a lone surrogate escape
        b'{"sku": "J-5", "title": "t", "price": 1' + b"1" * 5000 + b"}",  # 5: a 5000-digit int
        b"[" * 100_000 + b"]" * 100_000,  # 6: nested too deeply for the parser
        row("J-7", description="q" * (MAX_LINE_CHARS + 5)),  # 7: a line over the limit
        row("J-8", description="d" * (MAX_FIELD_CHARS + 1)),  # 8: a field over the limit
        row("J-9", description="d" * MAX_FIELD_CHARS),  # 9: a field at the limit
        row("J-10", category="c", category_name="n" * 200),  # 10: longer than the column
        row("J-11", images=["\udfff"]),  # 11: a lone surrogate in a list
        b"",  # 12
        b"[1]",  # 13
        b"{broken",  # 14
        row("J-15"),  # 15
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")

    output, rejects = run(manifest)

    assert "created 3, updated 0, unchanged 0, rejected 11" in output
    assert skus() == {"J-1", "J-9", "J-15"}
    assert sorted(rejects) == [2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14]
    assert rejects[2] == "invalid UTF-8"
    assert "Null characters are not allowed" in rejects[3]
    assert rejects[4] == "title: holds a lone surrogate, which is not a character"
    assert rejects[5].startswith("invalid JSON: Exceeds the limit")
    assert rejects[6] == "invalid JSON: nested too deeply"
    assert rejects[7] == f"a line is longer than {MAX_LINE_CHARS} characters"
    assert rejects[8].startswith("description: Ensure this field has no more than")
    assert rejects[10].startswith("category_name:")
    assert rejects[11].startswith("images: holds a lone surrogate")


@pytest.fixture
def refusing_database():
    """Fault injection in the real database: a trigger refuses two skus the way a constraint
    (IntegrityError) or a bad value (DataError, PostgreSQL only) would."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                """
                CREATE FUNCTION test_refuse_sku() RETURNS trigger AS $$
                BEGIN
                    IF NEW.sku = 'BOOM-CONSTRAINT' THEN
                        RAISE EXCEPTION 'injected' USING ERRCODE = 'check_violation';
                    ELSIF NEW.sku = 'BOOM-VALUE' THEN
                        RAISE EXCEPTION 'injected' USING ERRCODE = 'numeric_value_out_of_range';
                    END IF;
                    RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER test_refuse_sku BEFORE INSERT ON catalog_product
                    FOR EACH ROW EXECUTE FUNCTION test_refuse_sku();
                """
            )
        else:
            cursor.execute(
                """
                CREATE TRIGGER test_refuse_sku BEFORE INSERT ON catalog_product
                WHEN NEW.sku IN ('BOOM-CONSTRAINT', 'BOOM-VALUE')
                BEGIN SELECT RAISE(ABORT, 'injected'); END
                """
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER test_refuse_sku"
                + (" ON catalog_product" if connection.vendor == "postgresql" else "")
            )
            if connection.vendor == "postgresql":
                cursor.execute("DROP FUNCTION test_refuse_sku()")


def test_a_row_the_database_refuses_is_rejected_alone(tmp_path, refusing_database):
    manifest = tmp_path / "catalog.jsonl"
    rows = [
        {"sku": "D-1", "title": "t", "price": 1},
        {"sku": "BOOM-CONSTRAINT", "title": "t", "price": 1},
        {"sku": "D-3", "title": "t", "price": 1},
        {"sku": "BOOM-VALUE", "title": "t", "price": 1},
        {"sku": "D-5", "title": "t", "price": 1},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    output, rejects = run(manifest)

    assert "created 3, updated 0, unchanged 0, rejected 2" in output
    assert skus() == {"D-1", "D-3", "D-5"}
    assert sorted(rejects) == [2, 4]
    assert all(r.startswith("refused by the database: ") for r in rejects.values())
