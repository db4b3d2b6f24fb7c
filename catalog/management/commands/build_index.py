"""Rebuild shard indexes from the stored embeddings; the search workers swap to them."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.services.index_builds import build_shard
from workers.queues import Queue
from workers.tasks.maintenance import build_index


class Command(BaseCommand):
    help = "Build (train, fill, tune) shard indexes; --queue hands the work to an index worker."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--shard", type=int, default=None, help="one shard (default: all)")
        parser.add_argument(
            "--spec", default=None, help="auto, flat, ivf, hnsw, ivfpq or a factory"
        )
        parser.add_argument("--queue", action="store_true", help="run on the `index` queue")

    def handle(
        self, *args: object, shard: int | None, spec: str | None, queue: bool, **options: object
    ) -> None:
        if shard is not None and not 0 <= shard < settings.SEARCH_SHARDS:
            raise CommandError(f"--shard must be in [0, {settings.SEARCH_SHARDS})")
        if queue:
            result = build_index.apply_async(args=[shard, spec], queue=Queue.INDEX.value)
            self.stdout.write(f"queued build_index as task {result.id}")
            return
        shards = range(settings.SEARCH_SHARDS) if shard is None else [shard]
        for n in shards:
            with tqdm(
                desc=f"shard {n}: embeddings read", unit="vec", disable=options["verbosity"] == 0
            ) as bar:
                report = build_shard(n, spec=spec, progress=bar.update)
            self.stdout.write(json.dumps(report, default=str))
