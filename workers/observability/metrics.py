"""Every Prometheus metric of the service, defined once. Django-free.

Code that observes an event imports the metric from here and records it where the
event happens. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before this import)
values go to per-process files that /metrics sums per host; gauges use "live" modes,
so a process that exits stops being reported.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from workers.observability import multiproc

multiproc.prepare()  # the directory must exist before the first value is created

# Latency buckets from a cached shard hit (well under a millisecond) to a timed-out encode.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUERY_COUNT_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200)

# ---------------------------------------------------------------- web / API
# catalog/middleware.py observes every request: under /api/ by DRF route name (a 429 is a
# throttled request), anything else by area; never the raw path.

API_REQUEST_SECONDS = Histogram(
    "vps_api_request_duration_seconds",
    "Time to answer an API request (/api/), by route name (view), method and status code.",
    ["view", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
WEB_REQUEST_SECONDS = Histogram(
    "vps_web_request_duration_seconds",
    "Time to answer a request outside the API, by area (admin, static, media, metrics, site), "
    "method and status code.",
    ["area", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
DB_QUERIES = Histogram(
    "vps_db_queries_per_request",
    "Database queries one HTTP request made, by view (API route name, or area outside the API).",
    ["view"],
    buckets=QUERY_COUNT_BUCKETS,
)
DB_SECONDS = Histogram(
    "vps_db_seconds_per_request",
    "Time one HTTP request spent in database queries, by view (as vps_db_queries_per_request).",
    ["view"],
    buckets=LATENCY_BUCKETS,
)

# ---------------------------------------------------------------- search (caller side)

SEARCH_QUERIES = Counter(
    "vps_search_queries",
    "Search calls fanned out to the shards, by outcome (full, partial, failed).",
    ["outcome"],
)
SEARCH_PARTIAL = Counter(
    "vps_search_partial_answers",
    "Search answers merged without every shard (some shard missed the deadline or failed).",
)
SHARD_REPLY_SECONDS = Histogram(
    "vps_search_shard_reply_seconds",
    "Time from sending a search to a shard's reply arriving, per shard.",
    ["shard"],
    buckets=LATENCY_BUCKETS,
)
SHARD_MISSED = Counter(
    "vps_search_shard_missed",
    "Searches a shard did not answer before the deadline, or answered with an error.",
    ["shard", "reason"],
)
QUERY_CACHE = Counter(
    "vps_query_cache_lookups",
    "Query-embedding cache lookups, by result (hit or miss).",
    ["result"],
)

# ---------------------------------------------------------------- RPC server side

RPC_BATCH_SIZE = Histogram(
    "vps_rpc_batch_size",
    "Requests answered per handler call, per RPC server (shard-<n>, encoder).",
    ["server"],
    buckets=BATCH_BUCKETS,
)
RPC_HANDLER_SECONDS = Histogram(
    "vps_rpc_handler_seconds",
    "Time an RPC server spends answering one batch, per server.",
    ["server"],
    buckets=LATENCY_BUCKETS,
)
RPC_DROPPED = Counter(
    "vps_rpc_dropped_requests",
    "Requests an RPC server dropped unanswered, by reason (expired, malformed).",
    ["server", "reason"],
)

# ---------------------------------------------------------------- encoding

ENCODE_IMAGES = Counter(
    "vps_encode_images",
    "Catalog images encoded into embeddings (rate() gives the encode throughput).",
)
ENCODE_FAILURES = Counter(
    "vps_encode_failures",
    "Catalog images that could not be encoded, by reason code.",
    ["reason"],
)

# ---------------------------------------------------------------- shard replicas
# Refreshed every few seconds by each replica (workers/observability/shard_gauges.py);
# "liveall" keeps one series per live process (label pid): one per replica.


def _shard_gauge(name: str, documentation: str) -> Gauge:
    return Gauge(name, documentation, ["shard"], multiprocess_mode="liveall")


SHARD_VECTORS = _shard_gauge("vps_shard_vectors", "Live vectors in the shard replica.")
SHARD_DELTA = _shard_gauge(
    "vps_shard_delta_size",
    "Fresh vectors waiting for compaction: in the exact delta, or a compressed IVF's rows in RAM.",
)
SHARD_REMOVED_FRACTION = _shard_gauge(
    "vps_shard_removed_fraction", "Share of index slots holding removed or superseded vectors."
)
SHARD_UPDATE_LAG = _shard_gauge(
    "vps_shard_update_lag_seconds",
    "Age of the oldest update-log entry not applied yet (0 when caught up).",
)
SHARD_LAST_APPLIED_AGE = _shard_gauge(
    "vps_shard_last_applied_age_seconds",
    "Seconds since the last applied update-log entry was appended (grows when idle).",
)
SHARD_READY = _shard_gauge(
    "vps_shard_ready",
    "1 while the replica serves: its state is continued by the log without a gap; else 0.",
)
SHARD_SNAPSHOT_AGE = _shard_gauge(
    "vps_shard_snapshot_age_seconds",
    "Seconds since the newest artifact of the shard's generation was published to the store.",
)
SHARD_NPROBE = _shard_gauge("vps_shard_nprobe", "Tuned IVF nprobe of the shard's index.")
SHARD_EF_SEARCH = _shard_gauge("vps_shard_ef_search", "Tuned HNSW efSearch of the shard's index.")
