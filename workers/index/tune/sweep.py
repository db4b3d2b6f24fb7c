"""One knob's sweep: the cheapest setting that reaches a recall target on held-out queries.

The knob is swept by powers of two up to the first that passes, then bisected between that
one and the last that failed: latency grows about linearly with nprobe and efSearch, so
stopping at a power of two can cost up to twice the needed time. A setting passes when its
recall, less one standard error of the mean over the queries (the measured spread), still
reaches the target: a fixed margin would be too wide for many queries and too narrow for few.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from workers.index.shard import Shard
from workers.index.spec import SearchParams
from workers.index.tune.recall import Measured

RERANK_STEPS = (25, 50, 100, 200, 400, 800, 1600, 3200)
PLATEAU_GAIN = 0.001  # recall gained by doubling a knob below which its sweep stops
EF_STEPS = (16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class KnobRange:
    """One knob swept with the others fixed (`base`): powers of two in `steps`, and the
    cheapest value that means anything (`lowest`) to bisect down to."""

    base: SearchParams
    knob: str | None  # None: nothing to turn (one setting)
    steps: tuple[int, ...]
    lowest: int = 1

    def at(self, value: int) -> SearchParams:
        return replace(self.base, **{self.knob: value}) if self.knob else self.base


def candidate_grid(shard: Shard, k: int = 10) -> list[KnobRange]:
    """The knobs to sweep, each from cheapest to most expensive."""
    spec = shard.spec
    nlist = spec.nlist
    if spec.kind == "hnsw":  # a graph search keeps max(efSearch, k) candidates
        steps = tuple(ef for ef in EF_STEPS if ef > k) or (k,)
        return [KnobRange(SearchParams(), "ef_search", steps, lowest=k)]
    if nlist:
        probes = tuple(p for p in (2**i for i in range(20)) if p <= nlist)
        if spec.rerank:
            return [KnobRange(SearchParams(rerank_k=r), "nprobe", probes) for r in RERANK_STEPS]
        return [KnobRange(SearchParams(), "nprobe", probes)]
    if spec.rerank:
        return [KnobRange(SearchParams(), "rerank_k", RERANK_STEPS, lowest=k)]
    return [KnobRange(SearchParams(), None, ())]


def bisect_step(low: int, high: int) -> bool:
    """Whether the gap between a failing `low` and a passing `high` is still worth halving:
    wider than 1/16 of `high` (about linear cost: within 7% of the cheapest passing)."""
    return high - low > max(1, high // 16)


def cheapest_passing(
    knobs: KnobRange,
    run: Callable[[SearchParams], Measured],
    target: float,
    margin: float | None,
    slower_than: float | None = None,
) -> Measured | None:
    """The cheapest setting of `knobs` that passes (None if none does): powers of two up to
    the first that passes, then bisection between it and the last that failed. Stops early
    on a plateau, or once a setting is slower than `slower_than` seconds."""
    if knobs.knob is None:
        only = run(knobs.base)
        return only if only.passes(target, margin) else None
    low, previous = knobs.lowest - 1, -1.0  # low: the largest value known to fail
    passing: Measured | None = None
    for value in knobs.steps:
        got = run(knobs.at(value))
        if got.passes(target, margin):
            passing = got
            break
        if slower_than is not None and got.seconds > slower_than:
            return None
        if got.recall < previous + PLATEAU_GAIN:
            return None  # more of this knob will not help
        low, previous = value, got.recall
    if passing is None:
        return None
    high = getattr(passing.params, knobs.knob)
    low = max(low, knobs.lowest - 1)
    while bisect_step(low, high):
        middle = (low + high) // 2
        got = run(knobs.at(middle))
        if got.passes(target, margin):
            high, passing = middle, got
        else:
            low = middle
    return passing
