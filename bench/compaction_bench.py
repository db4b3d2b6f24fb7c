"""Search latency while a compressed shard compacts, against the same searches quiet.

A compressed shard (OPQ+IVF+PQ, exact re-rank from its bfloat16 file) is compacted,
round after round, each time with 5% of its vectors just removed and fresh ones waiting,
while one thread searches single queries back to back (the shard's knobs, as the RPC
server sends them) and another keeps writing (upserts, supersedes and deletes in small
batches, as a replica following its log does). Quiet phases (the same searches and
writes, no compaction) alternate with the compactions; their pooled p99 is the baseline.
Then nothing may be lost: the shard's ids equal the model of every write, each vector
written finds itself, no removed id comes back.

    python bench/compaction_bench.py --quick     # 50k x 64, OPQ8,IVF128,PQ8 (< 2 min)
    python bench/compaction_bench.py             # 1M x 512, OPQ32,IVF4096,PQ32 (long)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.index.bulk_build import build_bulk
from workers.index.shard import Shard
from workers.index.spec import IndexSpec
from workers.index.synthetic import ClusterModel
from workers.index.types import VectorAttrs
from workers.serving.upkeep import compact_aside

K = 10
WRITE_BATCH = 20  # vectors a write batch upserts (and ids it deletes), every WRITE_EVERY_S
WRITE_EVERY_S = 0.02


def attrs_for(ids: np.ndarray) -> VectorAttrs:
    return VectorAttrs.build(ids, ids % 100, (ids % 50).astype(np.float32), ids % 3 != 0)


class Writer:
    """Writes in small batches until stopped, keeping the model of what is live."""

    def __init__(self, shard: Shard, layout: ClusterModel, live: dict[int, int], seed: int) -> None:
        self.shard, self.layout, self.live = shard, layout, live
        self.rng = np.random.default_rng(seed)
        self.next_id = max(live) + 1
        self.written: dict[int, np.ndarray] = {}  # id -> vector, written while running
        self.deleted: set[int] = set()

    def step(self) -> None:
        ids = np.arange(self.next_id, self.next_id + WRITE_BATCH, dtype=np.int64)
        self.next_id += WRITE_BATCH
        old = self.rng.choice(np.fromiter(self.live, np.int64), size=2 * WRITE_BATCH // 4)
        superseded, gone = np.unique(old[: len(old) // 2]), np.unique(old[len(old) // 2 :])
        gone = np.setdiff1d(gone, superseded)
        both = np.concatenate([ids, superseded])
        x = self.layout.sample(len(both), self.rng)
        self.shard.upsert(both, x, attrs_for(both))
        self.shard.delete(gone)
        for image_id, row in zip(both.tolist(), x, strict=True):
            self.live[image_id] = 1
            self.written[image_id] = row
            self.deleted.discard(image_id)
        for image_id in gone.tolist():
            self.live.pop(image_id, None)
            self.written.pop(image_id, None)
            self.deleted.add(image_id)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(WRITE_EVERY_S):
            self.step()


def phase(
    shard: Shard,
    queries: np.ndarray,
    writer: Writer,
    start: Callable[[], threading.Thread] | None,
    seconds: float,
) -> np.ndarray:
    """Single-query latencies (ms) with the writer running, while the thread `start` starts
    runs (until it ends) or for `seconds`."""
    stop = threading.Event()
    writing = threading.Thread(target=writer.run, args=(stop,))
    writing.start()
    busy = start() if start is not None else None
    out = []
    i = 0
    ends = time.perf_counter() + seconds
    while busy.is_alive() if busy is not None else time.perf_counter() < ends:
        q = queries[i % len(queries)]
        t0 = time.perf_counter()
        shard.search(q, K)
        out.append(time.perf_counter() - t0)
        i += 1
    stop.set()
    writing.join()
    return np.array(out) * 1e3


def compaction(shard: Shard, args: argparse.Namespace) -> Callable[[], threading.Thread]:
    """How the shard service starts a compaction (its own thread, lowest CPU priority),
    or with --same-priority a plain thread."""
    if args.same_priority:

        def plain() -> threading.Thread:
            thread = threading.Thread(target=shard.compact)
            thread.start()
            return thread

        return plain
    return lambda: compact_aside(shard)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--spec", default="OPQ32,IVF4096,PQ32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--same-priority", action="store_true", help="compact on a plain thread, not niced"
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.dim, args.spec = 50_000, 64, "OPQ8,IVF128,PQ8"
    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    layout = ClusterModel.make(args.dim, 200, seed=3)
    rng = np.random.default_rng(0)
    ids = np.arange(args.n, dtype=np.int64)

    def batches():
        for lo in range(0, args.n, 50_000):
            part = ids[lo : lo + 50_000]
            yield part, layout.sample(len(part), rng), attrs_for(part)

    queries = layout.sample(2000, np.random.default_rng(99))
    with tempfile.TemporaryDirectory() as work:
        spec = IndexSpec.from_factory(args.spec)
        built = build_bulk(
            batches(),
            args.dim,
            "bench",
            spec,
            work_dir=Path(work),
            tune_queries=0,
            train_size=min(args.n // 2, 100_000),
        )
        shard = built.shard
        build_s = time.perf_counter() - started
        live = dict.fromkeys(ids.tolist(), 1)
        writer = Writer(shard, layout, live, seed=5)
        quiet, during, compact_s = [], [], []
        before = shard.stats()
        for _ in range(args.rounds):
            quiet_s = max(2.0, 2 * (compact_s[-1] if compact_s else 0.0))
            quiet.append(phase(shard, queries, writer, None, quiet_s))
            alive = np.fromiter(live, np.int64)
            removed = rng.choice(alive, size=len(alive) // 20, replace=False)
            shard.delete(removed)
            for image_id in removed.tolist():
                live.pop(image_id)
                writer.written.pop(image_id, None)
                writer.deleted.add(image_id)
            before = shard.stats()
            t0 = time.perf_counter()
            during.append(phase(shard, queries, writer, compaction(shard, args), 0.0))
            compact_s.append(time.perf_counter() - t0)
        quiet.append(phase(shard, queries, writer, None, max(2.0, 2 * compact_s[-1])))
        after = shard.stats()
        # nothing lost
        expected = np.sort(np.fromiter(live, np.int64))
        same_ids = np.array_equal(shard.ids(), expected)
        written = np.fromiter(writer.written, np.int64)
        rows = np.stack([writer.written[i] for i in written.tolist()])
        found = shard.search(rows, 1).image_ids[:, 0]
        self_found = float(np.mean(found == written))
        gone = np.fromiter(writer.deleted, np.int64) if writer.deleted else np.zeros(0, np.int64)
        resurrected = int(np.isin(shard.search(queries[:200], 50).image_ids, gone).sum())
        resurrected += int(np.isin(np.setdiff1d(gone, written), shard.ids()).sum())

    quiet_ms, during_ms = np.concatenate(quiet), np.concatenate(during)
    print(
        f"# {args.spec} {args.n:,} x {args.dim}: built in {build_s:.0f}s; last round: "
        f"{before['removed']:,} removed, {before['delta_size']:,} fresh before compacting"
    )
    print(f"{'phase':<22}{'queries':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'seconds':>9}")
    rows = [(f"quiet {r + 1}", quiet[r], None) for r in range(len(quiet))]
    for r in range(args.rounds):
        rows.insert(2 * r + 1, (f"compaction {r + 1}", during[r], compact_s[r]))
    rows += [("all quiet", quiet_ms, None), ("all during compaction", during_ms, None)]
    for name, ms, secs in rows:
        took = f"{secs:9.1f}" if secs is not None else ""
        print(
            f"{name:<22}{len(ms):>8}{np.percentile(ms, 50):9.2f}"
            f"{np.percentile(ms, 99):9.2f}{ms.max():9.1f}{took}"
        )
    during, quiet = during_ms, quiet_ms
    total_s = float(np.sum(compact_s))
    ratio = np.percentile(during, 99) / np.percentile(quiet, 99)
    print(
        f"# compactions took {total_s:.1f}s with writes going on ({len(writer.written):,} "
        f"vectors written, {len(writer.deleted):,} deleted meanwhile and after); slots "
        f"{before['slots']:,} -> {after['slots']:,}, removed {after['removed']:,}, "
        f"fresh {after['delta_size']:,}"
    )
    print(
        f"# nothing lost: ids equal the model {same_ids}; written vectors finding "
        f"themselves {self_found:.3f}; removed ids returned {resurrected}"
    )
    verdict = "OK" if ratio <= 2.0 and same_ids and resurrected == 0 else "CHECK"
    print(
        f"SUMMARY {args.spec} n={args.n:,}: search p99 during compaction "
        f"{np.percentile(during, 99):.2f} ms vs quiet {np.percentile(quiet, 99):.2f} ms = "
        f"x{ratio:.2f} (target <= 2), {args.rounds} compactions {total_s:.1f}s, "
        f"ids intact {same_ids}, "
        f"self-found {self_found:.3f}, removed returned {resurrected} [{verdict}]; "
        f"{time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
