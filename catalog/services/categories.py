"""Category writes.

Updates and deletes lock the row and work on that fresh copy (as product writes do): a
stale instance saved after a concurrent delete would be inserted again. A category that
is gone by then is a 404.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404

from catalog.errors import ServiceError
from catalog.models import Category


@transaction.atomic
def category_create(*, name: str, slug: str, parent: Category | None = None) -> Category:
    if parent is not None:
        parent = lock_category(parent.pk, field="parent")
    category = Category(name=name, slug=slug, parent=parent)
    category.full_clean()
    category.save()
    return category


@transaction.atomic
def category_update(*, category: Category, **changes: object) -> Category:
    if "parent" in changes:
        # Two moves at once could each pass the cycle check (A under B, B under A): a move
        # locks every category, in id order so that two moves cannot deadlock.
        list(Category.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        parent = changes["parent"]
        if isinstance(parent, Category):
            changes["parent"] = lock_category(parent.pk, field="parent")
    category = get_object_or_404(Category.objects.select_for_update(), pk=category.pk)
    for field, value in changes.items():
        setattr(category, field, value)
    if category.parent_id is not None and _is_descendant(category.parent, category):
        raise ServiceError("a category cannot be its own ancestor", details={"parent": ["cycle"]})
    category.full_clean()
    category.save(force_update=True)
    return category


@transaction.atomic
def category_delete(*, category: Category) -> None:
    category = get_object_or_404(Category.objects.select_for_update(), pk=category.pk)
    try:
        category.delete()
    except ProtectedError as exc:
        raise ServiceError(
            "this category has sub-categories; move or delete them first", code="protected"
        ) from exc


def lock_category(pk: int, *, field: str) -> Category:
    """A category a row is about to point at, locked so that it stays until the commit (a
    delete meanwhile would fail that row's foreign key at commit, a 500); a 400 naming the
    field if it was deleted since the request was validated. Lock it before the row that
    will point at it: a category delete locks the category, then its products."""
    found = Category.objects.select_for_update(no_key=True).filter(pk=pk).first()
    if found is None:
        raise ServiceError(
            f"the {field} category no longer exists", details={field: ["does not exist"]}
        )
    return found


def _is_descendant(node: Category | None, ancestor: Category) -> bool:
    seen: set[int] = set()
    while node is not None and node.pk not in seen:
        if node.pk == ancestor.pk:
            return True
        seen.add(node.pk)
        node = node.parent
    return False
