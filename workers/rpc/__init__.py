"""Query RPC over Redis lists (no Django): shards and encoders answer the web process.

- `protocol`: the msgpack wire format (raw float32/int64 arrays, never pickle) and its
  strict decoder; `errors`: what callers catch (`RpcUnavailable`, `NoShardAvailable`,
  `NoWorkerAvailable` -> 503; `BadRequest` -> 400).
- `server.RpcServer`: the serving loop of one request list (batching, deadlines,
  malformed-message dropping, Redis-restart survival, graceful stop, counters).
- `search`: `make_search_handler(search_fn, shard=n)` and `shard_queue_key(n)`.
- `encode`: `make_encode_handler(encoder)`, `decode_image`, `LocalEncoder` (in-process
  encoding for small deployments), `ENCODE_QUEUE_KEY`; `cache.QueryEmbeddingCache`.
- `client`: `SearchClient` (fan out to all shards, merge top-k, partial answers) and
  `EncodeClient`; `connection.connect(url)` builds a Redis client that fails fast.
- `merge.merge_shard_hits`: the pure top-k merge of shard answers.

Redis keys: requests `search:rpc:shard:<n>` and `search:rpc:encode` (bounded lists that
expire when nobody pushes), replies `search:rpc:reply:<request id>` (expire after
`reply_ttl_s`), query vectors `search:qemb:<model>:<text|image>:<sha256>`.
"""
