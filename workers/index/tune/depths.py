"""The knob each search deeper than the tuned k needs, and for compressed shards the re-rank
candidates a filter needs: filtered searches and requests for more than k results scale
along that table (`depth.DepthTable`). The merged top d spreads over the shards as the
top k does, so recall@d is weighted for the shard count the same way (`recall`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from workers.index.shard import Shard
from workers.index.spec import EF_SEARCH_MAX, RERANK_K_MAX, SearchParams
from workers.index.tune.recall import measure, recall_excluding

# Depths past k a search may need: the API's default k, and the 10th match of a filter
# keeping 10% or 1% of the vectors (a fraction s puts the k-th match near rank k/s)
DEPTHS = (20, 100, 1000)
DEPTH_QUERIES = 200  # recall@1000 averages 1000 neighbours a query: fewer queries suffice
# a deeper knob's plateau: recall@20 over 200 queries moves ~0.005 by chance, and doubling
# nprobe for less (20k IVF512,PQ16 at 256 -> 512: 0.9245 -> 0.926) doubled the latency
DEPTH_PLATEAU_GAIN = 0.005


def tune_depths(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int,
    target: float,
    own: np.ndarray | None = None,
    n_shards: int = 1,
) -> dict[str, dict[str, float]]:
    """The smallest nprobe / efSearch reaching `target` recall@d at each depth d of
    DEPTHS that `truth` is deep enough for, from the tuned one up. A filter keeping
    a fraction s of the vectors needs about what depth k/s needs (100k IVF1024, a random
    5% filter at nprobe 80/160/320: filtered recall@10 0.800/0.875/0.940, unfiltered
    recall@200 0.812/0.883/0.948), so `Shard.scaled_params` reads this table. A
    compressed shard's entries also hold the re-rank candidates a filter keeping k/d
    needs there (`tune_candidates`). Recall is the merged answer's over `n_shards`."""
    spec, tuned = shard.spec, shard.params
    if spec.kind == "hnsw":
        knob, steps = "ef_search", [2**i for i in range(4, 20) if 2**i <= EF_SEARCH_MAX]
    elif spec.nlist:
        knob, steps = "nprobe", [p for p in (2**i for i in range(20)) if p <= spec.nlist]
    else:
        return {}
    extra = 1 if own is not None else 0
    current = int(getattr(tuned, knob) or 1)
    candidates = tuned.rerank_k
    table: dict[str, dict[str, float]] = {}
    for depth in (d for d in DEPTHS if d > k):
        if truth.shape[1] < depth + extra or shard.n_vectors < 2 * depth:
            break
        chosen: tuple[int, float] | None = None
        for value in [current] + [s for s in steps if s > current]:
            if knob == "ef_search" and value < depth:
                continue  # a graph search keeps at most efSearch candidates
            params = replace(tuned, **{knob: value})
            if tuned.rerank_k is not None:
                # the lists' coverage, not the codes' order: a filter keeping 2% of 100k
                # OPQ32,IVF1024,PQ32 reached recall@10 0.90 / 0.98 / 0.998 at nprobe 338 /
                # 676 / 1024 with 2500 candidates, while recall@100 measured with 5
                # candidates a result (as tuned) plateaued at 0.86 by nprobe 128, too few
                # lists (the candidates each depth needs are tuned next: `tune_candidates`)
                params = replace(params, rerank_k=RERANK_K_MAX)
            recall = measure(
                shard,
                queries[:DEPTH_QUERIES],
                truth[:DEPTH_QUERIES],
                params,
                depth,
                None if own is None else own[:DEPTH_QUERIES],
                n_shards,
            ).recall
            if chosen is not None and recall < chosen[1] + DEPTH_PLATEAU_GAIN:
                break  # a plateau: the cheaper setting recalls as much
            chosen = (value, recall)
            if recall >= target:
                break
        if chosen is None:
            break
        table[str(depth)] = {knob: chosen[0], "recall": chosen[1]}
        current = chosen[0]
        if tuned.rerank_k is not None:  # from the shallower depth's count up, as the knob
            at_depth = replace(tuned, **{knob: chosen[0]}, rerank_k=candidates)
            candidates, recall = tune_candidates(
                shard, queries, truth, at_depth, k=k, depth=depth, target=target, own=own,
                n_shards=n_shards,
            )  # fmt: skip
            table[str(depth)].update(rerank_k=candidates, filtered_recall=recall)
    return table


def tune_candidates(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    params: SearchParams,
    *,
    k: int,
    depth: int,
    target: float,
    own: np.ndarray | None = None,
    n_shards: int = 1,
) -> tuple[int, float]:
    """The fewest re-rank candidates (`params`' count, doubled up to RERANK_K_MAX) with
    which a compressed shard finds the k best matches of a random filter keeping k / depth
    of its vectors at `target` recall, probing as `params` do; and that recall. Doubling
    stops on a plateau at the cheaper count: past some count the lists probed, not the
    candidates, bound the recall. The filter's exact top k are its members among each
    query's exact neighbours (`truth`, image ids, best first), as deep as `truth` goes; a
    query's own id counts in neither. Recall is the merged answer's over `n_shards`."""
    ids = shard.ids()
    allowed = ids[np.random.default_rng(depth).random(len(ids)) < k / depth]
    selection = shard.selection_of(allowed)
    member = np.isin(truth, allowed)
    if own is not None:
        member &= truth != own[:, None]
    expected = np.full((len(truth), k), -1, dtype=np.int64)  # -1: truth not deep enough
    for row, (neighbours, keep) in enumerate(zip(truth, member, strict=True)):
        matches = neighbours[keep][:k]
        expected[row, : len(matches)] = matches
    chosen: tuple[int, float] | None = None
    candidates = int(params.rerank_k or k)
    while True:
        asked = replace(params, rerank_k=candidates)
        _, found = shard.search_images(queries, k + (own is not None), asked, selection)
        recall = recall_excluding(found, expected, own, k, n_shards)
        if chosen is not None and recall < chosen[1] + DEPTH_PLATEAU_GAIN:
            return chosen
        chosen = (candidates, recall)
        if recall >= target or candidates >= RERANK_K_MAX:
            return chosen
        candidates = min(RERANK_K_MAX, 2 * candidates)
