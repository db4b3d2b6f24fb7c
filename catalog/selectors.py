"""Reads that are more than one query."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Min, QuerySet, Value
from django.db.models.functions import Upper
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from catalog.models import IN_FLIGHT_STATES, Category, Product


def equal_in_any_case(products: QuerySet, field: str, value: str) -> QuerySet:
    """`products` whose `field` is `value` in any case, compared as UPPER(field), which an
    index serves (catalog_product_sku_upper, _brand_upper): `__iexact` is a LIKE on
    SQLite, which reads the whole table."""
    alias = f"{field}_upper"
    return products.alias(**{alias: Upper(field)}).filter(**{alias: Upper(Value(value))})


def catalog_summary() -> dict[str, object]:
    states = dict(Product.objects.values_list("index_state").annotate(n=Count("id")).order_by())
    return {
        "products": sum(states.values()),
        "categories": Category.objects.count(),
        "index_states": states,
    }


@dataclass
class StuckInState:
    """Active products left in one in-flight state for longer than a while."""

    state: str
    count: int = 0
    longest_s: float = 0.0  # the longest time one has been in the state
    ids: list[int] = field(default_factory=list)  # the longest-waiting ones, up to `sample`


def products_stuck_in_state(*, older_than_s: float, sample: int = 20) -> list[StuckInState]:
    """Per in-flight state (pending, encoding), the active products that entered it more
    than `older_than_s` seconds ago (`Product.index_state_at`)."""
    now = timezone.now()
    stuck = Product.objects.filter(
        is_active=True,
        index_state__in=IN_FLIGHT_STATES,
        index_state_at__lte=now - timedelta(seconds=older_than_s),
    )
    found = {
        row["index_state"]: row
        for row in stuck.values("index_state")
        .annotate(n=Count("pk"), oldest=Min("index_state_at"))
        .order_by()
    }
    out = []
    for state in IN_FLIGHT_STATES:
        row = found.get(state)
        if row is None:
            out.append(StuckInState(str(state)))
            continue
        ids = stuck.filter(index_state=state).order_by("index_state_at", "pk")
        out.append(
            StuckInState(
                str(state),
                row["n"],
                (now - row["oldest"]).total_seconds(),
                list(ids.values_list("pk", flat=True)[:sample]),
            )
        )
    return out


def product_for_page(product_id: int, *, staff: bool) -> Product:
    """A product with its category and images; Http404 unless it is active (staff see all)."""
    if not 0 < product_id < 2**63:  # the URL takes any digits; the database would overflow
        raise Http404("No such product.")
    products = Product.objects.select_related("category").prefetch_related("images")
    if not staff:
        products = products.filter(is_active=True)
    return get_object_or_404(products, pk=product_id)
