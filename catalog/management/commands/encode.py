"""Queue products for encoding again."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.models import IndexState, Product
from catalog.services.products import products_reencode


class Command(BaseCommand):
    help = "Re-enqueue encoding: --stale (pending, encoding or failed products) or --all."

    def add_arguments(self, parser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--stale", action="store_true")
        group.add_argument("--all", action="store_true")
        parser.add_argument("--chunk-size", type=int, default=64)

    def handle(
        self, *args: object, stale: bool, all: bool, chunk_size: int, **options: object
    ) -> None:
        if chunk_size < 1:
            raise CommandError("--chunk-size must be >= 1")
        products = Product.objects.filter(is_active=True)
        if stale:
            products = products.filter(
                index_state__in=[IndexState.PENDING, IndexState.ENCODING, IndexState.FAILED]
            )
        ids = list(products.order_by("pk").values_list("pk", flat=True))
        queued = 0
        for start in tqdm(
            range(0, len(ids), chunk_size),
            desc="enqueue",
            unit="chunk",
            disable=options["verbosity"] == 0,
        ):
            queued += products_reencode(product_ids=ids[start : start + chunk_size])
        self.stdout.write(f"queued {queued} product(s) for encoding")
