"""How long a fresh replica takes to become ready: from the artifact store against replaying
the update log from the start, and how much Redis memory the log holds per 1M updates.

A private redis-server (started here, on a free port, with the project's persistence
settings) holds shard 0's update log: N upserts of clustered 512-d vectors in entries of
--entry-size (an encode batch). Then, in the same run:

1. log replay: a replica on an empty disk whose log was never trimmed replays all N.
2. from the store: that replica publishes a snapshot to a file:// store (the log behind
   it is trimmed), --tail more updates arrive, and a second replica on another empty
   disk gets ready from the store: download (checksums verified), load, replay the tail.

Both replicas use the same index spec (exact `Flat` by default, so the comparison is
about moving state, not training). The ratio is replay time over store time.

    python bench/recovery_bench.py --quick      # 100k vectors, < 2 minutes
    python bench/recovery_bench.py              # 1M vectors (about 2 GB of log in Redis)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.index.artifacts import ArtifactStore
from workers.index.log import UpdateLog
from workers.index.replica import ShardReplica
from workers.index.shard import Shard
from workers.index.synthetic import ClusterModel
from workers.index.threads import use_search_threads
from workers.index.types import VectorAttrs
from workers.redis_process import RedisProcess

MODEL = "bench-recovery-512"
DIM = 512
SHARD = 0


def append_catalog(log: UpdateLog, start: int, n: int, entry_size: int, seed: int) -> None:
    """Upserts of products start+1 .. start+n, `entry_size` vectors an entry."""
    model = ClusterModel.make(DIM, 1000, seed=1234)
    rng = np.random.default_rng(seed)
    for lo in range(0, n, entry_size):
        rows = min(entry_size, n - lo)
        ids = np.arange(start + lo + 1, start + lo + rows + 1, dtype=np.int64)
        attrs = VectorAttrs.build(ids, ids % 20 + 1, ids % 500 + 0.99, ids % 4 != 0)
        log.append_upserts(ids, model.sample(rows, rng), attrs)


def replica(client: redis.Redis, store: ArtifactStore, disk: Path, spec: str) -> ShardReplica:
    return ShardReplica(
        client, SHARD, MODEL, DIM, store=store, local_dir=disk, spec=spec, host=disk.name,
        batch=64,
    )  # fmt: skip


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    server = RedisProcess(work / "redis")
    server.data_dir.mkdir(parents=True)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        store = ArtifactStore((work / "store").as_uri())
        log = UpdateLog(client, SHARD, MODEL, DIM)

        before = used_memory(client)
        t0 = time.perf_counter()
        append_catalog(log, 0, args.n, args.entry_size, seed=1)
        append_s = time.perf_counter() - t0
        log_bytes = used_memory(client) - before

        first = replica(client, store, work / "disk-replay", args.spec)
        t0 = time.perf_counter()
        assert first.recover(), first.reason
        replay_s = time.perf_counter() - t0
        vectors = int(first.shard.stats()["vectors"])
        assert vectors == args.n, f"replayed {vectors} of {args.n}"

        t0 = time.perf_counter()
        artifact = first.publish_snapshot()
        publish_s = time.perf_counter() - t0
        assert artifact is not None
        trimmed = log.length()
        append_catalog(log, args.n, args.tail, args.entry_size, seed=2)

        # the parts of a start from the store, timed alone on a scratch disk
        t0 = time.perf_counter()
        fetched = store.fetch(artifact, work / "scratch-fetch")
        fetch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        Shard.load_dir(fetched, work / "scratch-load", verify=False)
        load_s = time.perf_counter() - t0
        shutil.rmtree(work / "scratch-fetch", ignore_errors=True)
        shutil.rmtree(work / "scratch-load", ignore_errors=True)

        second = replica(client, store, work / "disk-store", args.spec)
        t0 = time.perf_counter()
        assert second.recover(), second.reason
        store_s = time.perf_counter() - t0
        vectors = int(second.shard.stats()["vectors"])
        assert vectors == args.n + args.tail, f"got {vectors} of {args.n + args.tail}"
        size = sum(size for _, size in artifact.files.values())
        return {
            "append_s": append_s,
            "log_bytes": log_bytes,
            "replay_s": replay_s,
            "publish_s": publish_s,
            "artifact_bytes": size,
            "left_in_log": trimmed,
            "fetch_s": fetch_s,
            "load_s": load_s,
            "store_s": store_s,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k vectors, < 2 minutes")
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the shard")
    parser.add_argument("--tail", type=int, help="updates after the snapshot (default n/100)")
    parser.add_argument("--entry-size", type=int, default=64, help="vectors per log entry")
    parser.add_argument("--spec", default="Flat", help="index spec of both replicas")
    args = parser.parse_args()
    if args.quick:
        args.n = 100_000
    args.tail = args.tail if args.tail is not None else max(1, args.n // 100)
    use_search_threads(1)

    with tempfile.TemporaryDirectory(prefix="recovery-bench-") as tmp:
        r = run(args, Path(tmp))

    mib = 1 << 20
    per_million = r["log_bytes"] / args.n * 1_000_000
    rows = [
        ("log: append N upserts", f"{r['append_s']:.1f} s", f"{r['log_bytes'] / mib:,.0f} MiB"),
        ("log: Redis memory per 1M updates", "", f"{per_million / mib:,.0f} MiB"),
        ("A. replay the whole log", f"{r['replay_s']:.1f} s", f"{args.n:,} entries' vectors"),
        ("publish a snapshot", f"{r['publish_s']:.1f} s", f"{r['artifact_bytes'] / mib:,.0f} MiB"),
        ("B. from the store (total)", f"{r['store_s']:.1f} s", f"+ {args.tail:,} in the log"),
        ("   of which download + verify", f"{r['fetch_s']:.1f} s", ""),
        ("   of which load", f"{r['load_s']:.1f} s", ""),
    ]
    print(f"\nrecovery of one shard: {args.n:,} x {DIM}-d vectors, spec {args.spec}, "
          f"entries of {args.entry_size}, file:// store")  # fmt: skip
    print(f"{'step':36} {'time':>8}  size")
    for step, took, size in rows:
        print(f"{step:36} {took:>8}  {size}")
    ratio = r["replay_s"] / r["store_s"]
    print(
        f"summary: a fresh replica of {args.n:,} vectors is ready from the store in "
        f"{r['store_s']:.1f} s vs {r['replay_s']:.1f} s replaying the log ({ratio:.1f}x faster); "
        f"the log holds {per_million / mib:,.0f} MiB of Redis per 1M updates"
    )


if __name__ == "__main__":
    main()
