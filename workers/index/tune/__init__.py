"""Auto-tuning: the cheapest search parameters that reach a recall target on held-out
queries, with recall as the merged answer of an n-shard deployment sees it (`recall`), one
knob swept at a time (`sweep`), then the knobs deeper searches and filters need (`depths`);
`tuner.autotune` runs it all for one shard."""

from workers.index.tune.depths import DEPTHS, tune_candidates, tune_depths
from workers.index.tune.recall import (
    Measured,
    measure,
    merged_rank_weights,
    query_hits,
    recall_excluding,
    recall_spread,
)
from workers.index.tune.tuner import autotune

__all__ = [
    "DEPTHS",
    "Measured",
    "autotune",
    "measure",
    "merged_rank_weights",
    "query_hits",
    "recall_excluding",
    "recall_spread",
    "tune_candidates",
    "tune_depths",
]
