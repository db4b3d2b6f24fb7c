"""How deep a search must go: the tuned knobs scaled to the rank of the k-th result wanted.

The tuner sets nprobe / efSearch for recall at its k (10), then measures the knob each
deeper depth needs (`tune.tune_depths`). A request for more results than the tuned k, or a
filter keeping a fraction of the vectors, puts the k-th result near rank k / kept, so the
search follows that table there: log-log between its depths, proportional past the deepest,
and proportional to the depth itself when a shard has no table (untuned or loaded from an
earlier version).

A compressed shard's table also holds the re-rank candidates that a random filter keeping
k / depth of the vectors needed to find its k best matches. Codes order a filter's matches
as they order all vectors, so k results under a filter keeping `kept` need about
k / (tuned k) times the candidates measured at depth k / kept.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.index.spec import EF_SEARCH_MAX, RERANK_K_MAX, SearchParams

KNOBS = ("nprobe", "ef_search", "rerank_k")
_UNFILTERED_KEPT = 64  # scalings remembered (request params x k)


@dataclass(frozen=True)
class DepthTable:
    """The tuned k and, per knob measured deeper, (depth, value) points from the tuned
    setting down."""

    k: int = 10
    points: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    # unfiltered deeper requests (the API's default k=20) ask the same few scalings again
    # and again: 1.5 us each to compute, 0.2 to look up
    _unfiltered: dict[tuple, SearchParams] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> DepthTable:
        """The table of a tune report (`tune.autotune`), read once rather than per search."""
        k = int(report.get("k") or 10)
        tuned = report.get("params") or {}
        depths = report.get("depths") or {}
        points = {}
        for knob in KNOBS:
            base = tuned.get(knob)
            deeper = ((int(d), entry.get(knob)) for d, entry in depths.items())
            measured = sorted((d, float(v)) for d, v in deeper if v and d > k)
            if base and measured:
                points[knob] = ((k, float(base)), *measured)
        return cls(k, points)

    def factor(self, knob: str, depth: float) -> float:
        """How many times its tuned value `knob` needs to reach `depth`."""
        points = self.points.get(knob)
        if points is None:
            return depth / self.k
        base = points[0][1]
        for (d0, v0), (d1, v1) in itertools.pairwise(points):
            if depth <= d1:
                slope = math.log(v1 / v0) / math.log(d1 / d0)
                return v0 * (depth / d0) ** slope / base
        last, value = points[-1]
        return value * (depth / last) / base

    def scaled(
        self, params: SearchParams, k: int, kept: float = 1.0, nlist: int | None = None
    ) -> SearchParams:
        """`params` for the k-th of the results a filter keeping `kept` of the vectors
        leaves (nprobe at most `nlist`). Re-rank candidates grow with the depth too (see
        the module's docstring), in proportion to it without a measured table, up to a cap
        (100k OPQ32,IVF1024,PQ32 under a filter keeping 10% / 2%, at any nprobe: recall@10
        with the tuned 50 candidates 0.84 / 0.67, with 200 0.93 / 0.89, with 800 0.975 /
        0.99)."""
        depth = k / kept
        if depth <= self.k:
            return params
        if kept != 1.0:
            return self._scaled(params, k, depth, nlist)
        key = (params, k, nlist)
        found = self._unfiltered.get(key)
        if found is None:
            if len(self._unfiltered) >= _UNFILTERED_KEPT:
                self._unfiltered.clear()
            found = self._unfiltered[key] = self._scaled(params, k, depth, nlist)
        return found

    def _scaled(
        self, params: SearchParams, k: int, depth: float, nlist: int | None
    ) -> SearchParams:
        nprobe = params.nprobe
        if nprobe is not None and nlist:
            nprobe = min(nlist, math.ceil(nprobe * self.factor("nprobe", depth)))
        ef = params.ef_search
        if ef is not None:
            ef = min(EF_SEARCH_MAX, math.ceil(ef * self.factor("ef_search", depth)))
        rerank_k = params.rerank_k
        if rerank_k is not None:
            if "rerank_k" in self.points:
                grow = self.factor("rerank_k", depth) * k / self.k
            else:
                grow = depth / self.k
            rerank_k = max(rerank_k, min(RERANK_K_MAX, math.ceil(rerank_k * grow)))
        return SearchParams(nprobe=nprobe, ef_search=ef, rerank_k=rerank_k)
