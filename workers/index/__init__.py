"""The index engine (no Django): FAISS shards with real-time updates, their update log,
snapshots and builds.

- `shard.Shard`: one shard, a facade composing a backend of its index kind (`backends/`:
  flat, ivf, ivfpq, hnsw, gpu behind the protocol in `backends/base.py`) with `columns`
  (per-slot ids and filter attributes, id lookup), `selection` (filter bitmaps per
  version) and `depth` (tuned knobs scaled to the k-th result's depth), all in one
  `state.ShardState` swapped whole; `searching` (a search's rounds over one state),
  `grouping` (hits grouped by product), `compaction` (built aside, caught up, swapped),
  `persist` (snapshots), `faiss_calls` (the C++ entry points below the Python wrapper),
  `vectors` (checks and normalisation), `rerank` + `privatemap` (a compressed shard's
  exact rows, memory mapped), `footprint` (memory counts), `ivf_lists` (list rewrites),
  `rwlock`.
- `spec`: which FAISS index (`auto` by vector count); `tune`: auto-tuning to a recall
  target; `build`: streaming bulk builds (`gpu` trains on a GPU when there is one);
  `builds`: where a shard's replicas find a finished build; `threads`: OpenMP counts.
- `log`: the per-shard Redis Stream of updates; `replica.Replica`: a shard following it;
  `snapshot`: atomic, checksummed snapshot directories.
- `types`: values shared with the RPC and callers; `metrics`: recall and top-k merge;
  `synthetic`: clustered test and benchmark vectors.
"""
