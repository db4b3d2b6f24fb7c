"""Category writes."""

from __future__ import annotations

from django.db import transaction
from django.db.models import ProtectedError

from catalog.errors import ServiceError
from catalog.models import Category


@transaction.atomic
def category_create(*, name: str, slug: str, parent: Category | None = None) -> Category:
    category = Category(name=name, slug=slug, parent=parent)
    category.full_clean()
    category.save()
    return category


@transaction.atomic
def category_update(*, category: Category, **changes: object) -> Category:
    for field, value in changes.items():
        setattr(category, field, value)
    if category.parent_id is not None and _is_descendant(category.parent, category):
        raise ServiceError("a category cannot be its own ancestor", details={"parent": ["cycle"]})
    category.full_clean()
    category.save()
    return category


@transaction.atomic
def category_delete(*, category: Category) -> None:
    try:
        category.delete()
    except ProtectedError as exc:
        raise ServiceError(
            "this category has sub-categories; move or delete them first", code="protected"
        ) from exc


def _is_descendant(node: Category | None, ancestor: Category) -> bool:
    seen: set[int] = set()
    while node is not None and node.pk not in seen:
        if node.pk == ancestor.pk:
            return True
        seen.add(node.pk)
        node = node.parent
    return False
