"""The index engine (no Django): FAISS shards with real-time updates, their update log,
snapshots and builds.

- `shard.Shard`: one shard: a trained bulk index, a delta for fresh vectors, removed ids,
  searches through FAISS selectors, compaction, snapshot and load. It leans on
  `columns` (per-slot ids and filter attributes, id lookup), `selection` (filter bitmaps
  per version), `depth` (tuned knobs scaled to the k-th result's depth), `grouping`
  (hits grouped by product into results), `faiss_calls` (the C++ entry points below the
  Python wrapper), `vectors` (checks and normalisation), `rerank` + `privatemap` (a
  compressed shard's exact rows, memory mapped), `footprint` (memory counts),
  `ivf_lists` (list rewrites), `rwlock`. A single query's lock, check and grouping run
  compiled (`_hotpath.c`, chosen in `native`) where the install built it.
- `spec`: which FAISS index (`auto` by vector count); `tune`: auto-tuning to a recall
  target; `build`: streaming bulk builds (`gpu` trains on a GPU when there is one);
  `builds`: where a shard's replicas find a finished build; `threads`: OpenMP counts.
- `log`: the per-shard Redis Stream of updates; `replica.Replica`: a shard following it;
  `snapshot`: atomic, checksummed snapshot directories.
- `types`: values shared with the RPC and callers; `metrics`: recall and top-k merge;
  `synthetic`: clustered test and benchmark vectors.
"""
