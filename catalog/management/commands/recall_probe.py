"""Measure the live service's recall@10 against exact neighbours, now.

What beat runs hourly (`RECALL_PROBE_EVERY_S`), on demand: stored embeddings sampled as
queries, their exact top 10 products from a scan of the embedding table, the same
queries sent through the search RPC. Prints recall@10 overall and per shard, and the
probe's search latency (p50, p99); `--json` prints one JSON document. The result is
stored, so the admin's Search health page charts it.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.management.tables import table_lines
from catalog.services.recall import ProbeResult, run_probe


def as_document(result: ProbeResult) -> dict[str, Any]:
    return {
        "queries": result.queries,
        "recall_at_10": result.recall,
        "per_shard": {str(shard): recall for shard, recall in sorted(result.per_shard.items())},
        "latency_ms": {
            "p50": round(result.latency_percentile_ms(50), 3),
            "p99": round(result.latency_percentile_ms(99), 3),
        },
        "partial_answers": result.partial,
    }


class Command(BaseCommand):
    help = (
        "Measure recall@10 (overall and per shard) and search latency against exact "
        "neighbours of sampled stored embeddings; store the result."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--queries",
            type=int,
            default=None,
            help="stored embeddings sampled as queries (default RECALL_PROBE_QUERIES)",
        )
        parser.add_argument("--seed", type=int, default=None, help="repeatable sampling")
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON document")

    def handle(
        self,
        *args: object,
        queries: int | None,
        seed: int | None,
        as_json: bool = False,
        **options: object,
    ) -> None:
        if queries is not None and queries < 1:
            raise CommandError("--queries must be at least 1")
        result = run_probe(queries or settings.RECALL_PROBE_QUERIES, seed=seed)
        if result is None:
            raise CommandError(
                "nothing to probe: no encode worker has published its model yet, "
                "or no active product has an embedding"
            )
        document = as_document(result)
        if as_json:
            self.stdout.write(json.dumps(document, indent=1, sort_keys=True))
            return
        latency = document["latency_ms"]
        self.stdout.write(
            f"recall@10 {result.recall:.3f} over {result.queries} queries "
            f"({result.partial} partial answers)"
        )
        self.stdout.write(f"latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
        self.stdout.write("")
        rows = [(shard, f"{recall:.3f}") for shard, recall in document["per_shard"].items()]
        for line in table_lines(("shard", "recall@10"), rows):
            self.stdout.write(line)
