"""Migration 0009 (PostgreSQL): the expression index of 0007 becomes a stored, indexed
tsvector column, filled for the products already there, and back."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.support.migrations import latest, migrate

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("catalog", "0008_product_sku_upper_index")]
AFTER = [("catalog", "0009_product_search_document")]


def lexical_schema() -> tuple[set[str], bool]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'catalog_product'")
        indexes = {name for (name,) in cursor.fetchall() if "gin" in name}
        cursor.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'catalog_product' AND column_name = 'search_document'"
        )
        return indexes, cursor.fetchone() is not None


def test_the_expression_index_becomes_a_stored_column_and_back():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's lexical index")
    apps = migrate(BEFORE)
    try:
        assert lexical_schema() == ({"catalog_product_text_gin"}, False)
        Product = apps.get_model("catalog", "Product")
        mug = Product.objects.create(sku="M-1", title="Green polka-dot mug", price=1)
        migrate(AFTER)
        assert lexical_schema() == ({"catalog_product_document_gin"}, True)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM catalog_product"
                " WHERE search_document @@ plainto_tsquery('english', 'mugs')"
            )
            assert cursor.fetchall() == [(mug.pk,)]  # a row from before the migration
        migrate(BEFORE)
        assert lexical_schema() == ({"catalog_product_text_gin"}, False)
    finally:
        migrate(latest())
