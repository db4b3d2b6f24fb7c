"""Auto-tuning a shard: the cheapest search parameters whose recall on held-out queries, as
the merged answer of all shards sees it (`recall`), reaches a target; then the knobs deeper
searches need (`depths`)."""

from __future__ import annotations

import logging

import numpy as np

from workers.index.shard import Shard
from workers.index.spec import SearchParams
from workers.index.tune.depths import tune_depths
from workers.index.tune.recall import Measured, measure
from workers.index.tune.sweep import candidate_grid, cheapest_passing

logger = logging.getLogger(__name__)


def autotune(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int = 10,
    target: float = 0.95,
    own: np.ndarray | None = None,
    margin: float | None = None,
    n_shards: int = 1,
) -> dict[str, object]:
    """Pick the fastest setting whose recall on the held-out queries reaches `target` by
    `margin` (None: by its own standard error); store it and its recall on the shard.
    `n_shards`: how many shards the deployment's merged answer spreads over (`recall`);
    1 for a shard searched alone. `truth` is this shard's own exact neighbours."""
    if n_shards < 1:
        raise ValueError("n_shards must be at least 1")
    tried: list[Measured] = []

    def run(params: SearchParams) -> Measured:
        got = measure(shard, queries, truth, params, k, own, n_shards)
        tried.append(got)
        return got

    best: Measured | None = None
    for knobs in candidate_grid(shard, k):
        found = cheapest_passing(
            knobs, run, target, margin, slower_than=best.seconds if best else None
        )
        if found is not None and (best is None or found.seconds < best.seconds):
            best = found
    chosen = best or max(tried, key=lambda m: m.recall)
    used_margin = chosen.spread if margin is None else margin
    report = {
        "params": chosen.params.to_dict(),
        "recall_at_k": chosen.recall,
        "recall_spread": chosen.spread,
        "margin": used_margin,
        "k": k,
        "n_shards": n_shards,  # the recall is the merged answer's over this many shards
        "target": target,
        "reached": best is not None,
        "queries": len(queries),
        "ms_per_query_batched": 1e3 * chosen.seconds,
        "sweep": [m.row() for m in tried],
    }
    if best is None:
        logger.warning(
            "recall target %.2f (%d shards) not reached; best %.3f with %s",
            target,
            n_shards,
            chosen.recall,
            chosen.params,
        )
    shard.params = chosen.params
    report["depths"] = tune_depths(
        shard, queries, truth, k=k, target=target + used_margin, own=own, n_shards=n_shards
    )
    shard.tune_report = {key: value for key, value in report.items() if key != "sweep"}
    return report
