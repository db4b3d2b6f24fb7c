"""Rebuild shard indexes from the stored embeddings; the search workers swap to them.

Prints one row per shard built: its vectors, the index spec, the search knobs the build
tuned ("exact" for a flat scan, which has none), the recall@10 the tuning measured on
held-out vectors (what the merged answer of SEARCH_SHARDS shards gets from this one:
`workers/index/tune/recall.py`), and the seconds the shard took; `--json` prints the same
as one JSON document (with the build id, log position, artifact and the tuner's whole
report, whose `n_shards` says which shard count it tuned for).
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.management.tables import table_lines
from catalog.services.index_builds import build_shard
from workers.index.spec import IndexSpec, describe_knobs
from workers.queues import Queue
from workers.tasks.maintenance import build_index

COLUMNS = ("shard", "vectors", "spec", "tuned knobs", "recall@10", "seconds")


def summary(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What build_shard reported, as the table and the JSON document show it."""
    tune = report.get("tune") or {}  # none for an empty shard
    exact = IndexSpec.from_factory(report["spec"]).exact
    recall = tune.get("recall_at_k")
    return {
        "shard": report["shard"],
        "build_id": report["build_id"],
        "vectors": int(report["vectors"]),
        "spec": report["spec"],
        "exact": exact,
        "params": tune.get("params"),
        "knobs": describe_knobs(report["spec"], tune.get("params")) if tune or exact else "-",
        "recall_at_10": None if exact or recall is None else float(recall),
        "recall_target": tune.get("target"),
        "target_reached": tune.get("reached"),
        "tune_queries": tune.get("queries", 0),
        "seconds": round(seconds, 3),
        "train_s": report.get("train_s"),
        "add_s": report.get("add_s"),
        "tune_s": report.get("tune_s"),
        "log_position": report["log_position"],
        "uri": report["uri"],
        "tune": tune,
    }


def recall_cell(row: dict[str, Any]) -> str:
    if row["exact"]:
        return "exact"
    if row["recall_at_10"] is None:
        return "-"  # an empty shard: nothing was measured
    text = f"{row['recall_at_10']:.3f}"
    if row["target_reached"] is False:
        text += f" (target {row['recall_target']:.2f} not reached)"
    return text


class Command(BaseCommand):
    help = "Build (train, fill, tune) shard indexes; --queue hands the work to an index worker."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--shard", type=int, default=None, help="one shard (default: all)")
        parser.add_argument(
            "--spec", default=None, help="auto, flat, ivf, hnsw, ivfpq or a factory"
        )
        parser.add_argument("--queue", action="store_true", help="run on the `index` queue")
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON document")

    def handle(
        self,
        *args: object,
        shard: int | None,
        spec: str | None,
        queue: bool,
        as_json: bool = False,
        **options: object,
    ) -> None:
        if shard is not None and not 0 <= shard < settings.SEARCH_SHARDS:
            raise CommandError(f"--shard must be in [0, {settings.SEARCH_SHARDS})")
        if queue:
            result = build_index.apply_async(args=[shard, spec], queue=Queue.INDEX.value)
            queued = json.dumps({"queued": result.id})
            self.stdout.write(queued if as_json else f"queued build_index as task {result.id}")
            return
        rows = []
        for n in range(settings.SEARCH_SHARDS) if shard is None else [shard]:
            started = time.perf_counter()
            with tqdm(
                desc=f"shard {n}: embeddings read", unit="vec", disable=options["verbosity"] == 0
            ) as bar:
                report = build_shard(n, spec=spec, progress=bar.update)
            rows.append(summary(report, time.perf_counter() - started))
        if as_json:
            self.stdout.write(json.dumps(rows, indent=1, sort_keys=True, default=str))
            return
        cells = [
            (
                str(row["shard"]),
                str(row["vectors"]),
                row["spec"],
                row["knobs"],
                recall_cell(row),
                f"{row['seconds']:.2f}",
            )
            for row in rows
        ]
        for line in table_lines(COLUMNS, cells):
            self.stdout.write(line)
