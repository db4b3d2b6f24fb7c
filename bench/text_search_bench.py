"""What a text search costs at the API, and where: `GET /api/search/?q=...` by mode.

On search_bench's synthetic catalog (shards built with build_bulk, one ShardService
process per shard, a private redis-server, a SQLite catalog whose titles read
"Synthetic product <id>"), through Django's WSGI handler in this process (every
middleware, DRF, the rate limit), each text search answered from the whole candidate
list (up to SEARCH_MAX_DEPTH products a side, see catalog/text_search.py). Three kinds of
query, their vectors cached in Redis as a popular query's are:

- rare: a product number ("12345"), a word of one title;
- common: "product 12345", where "product" is a word of every title, as "shirt" would be
  in a shop of shirts: past SEARCH_COMMON_WORD_HITS hits it is counted on the candidates
  of the rarer word, not ranked over all its hits (catalog/lexical/);
- all common: "synthetic product", every title's two first words: the newest
  SEARCH_COMMON_WORD_HITS of the hits with both words are ranked.

Each mode (keyword, vector, hybrid) of each kind, requests interleaved in rounds, with
the p50 of each step the view takes (the functions of catalog/ it calls, timed by
wrapping them for the run): reading the query vector, the shards' ranking at the depth,
the lexical ranking, the candidates' rows, the facets and the page's cards. The
baseline, measured in the same rounds, is the same query vector through the RPC client
for one page (k=20): a search with none of the depth, words, facets or paging.

    python bench/text_search_bench.py --quick --work /tmp/rpb   # 50k, shares its build
    python bench/text_search_bench.py                          # 200k products
    python bench/text_search_bench.py --quick --postgres       # the catalog in PostgreSQL

`--postgres` puts the catalog in a throwaway PostgreSQL cluster (bench/pg_path.py: initdb
in a temporary folder, a free loopback port) instead of SQLite, built anew each run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.in_process_view import ViewCaller  # noqa: E402
from bench.pg_path import ThrowawayPostgres  # noqa: E402
from bench.rpc_bench import pct  # noqa: E402
from bench.search_data import DIM, fresh_vectors, query_products  # noqa: E402
from bench.search_procs import web_env  # noqa: E402
from bench.served import served  # noqa: E402
from workers.index.threads import use_search_threads  # noqa: E402
from workers.index.types import SearchFilter  # noqa: E402

MODES = ("keyword", "vector", "hybrid")
PAGE = 20
STEPS = {  # (module, function): what the row calls it
    ("catalog.search", "text_vector"): "query vector",
    ("catalog.search", "vector_ranking"): "shards at depth",
    ("catalog.lexical", "ranked"): "words",
    ("catalog.text_search", "_matched"): "candidates' rows",
    ("catalog.text_search", "facet_counts"): "facets",
    ("catalog.product_cache", "cards"): "cards",
}


class StepTimes:
    """Wraps the view's steps (module functions, looked up at call time) to record their
    wall time in ms under the current label, for this run only."""

    def __init__(self) -> None:
        self.label = ""
        self.ms: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        for (module, name), step in STEPS.items():
            mod = importlib.import_module(module)
            setattr(mod, name, self._wrap(getattr(mod, name), step))

    def _wrap(self, fn, step: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[self.label, step].append((time.perf_counter() - started) * 1e3)

        return timed


def queries(n_products: int, count: int) -> dict[str, list[str]]:
    numbers = np.random.default_rng(7).choice(np.arange(1, n_products + 1), count, replace=False)
    return {
        "rare": [str(int(n)) for n in numbers],
        "common": [f"product {int(n)}" for n in numbers],
        "all common": ["synthetic product"] * count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50k products, fewer rounds")
    parser.add_argument("--n", type=int, default=200_000, help="products (one vector each)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--spec", default="hnsw", help="index spec of each shard (HNSW32)")
    parser.add_argument("--queries", type=int, default=10, help="distinct queries of each kind")
    parser.add_argument("--rounds", type=int, default=8, help="passes over every query")
    parser.add_argument("--work", type=Path, help="keep shards+DB here and reuse them")
    parser.add_argument("--postgres", action="store_true", help="the catalog in PostgreSQL")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 50_000, 4
    use_search_threads(1)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        database_url = None
        if args.postgres:
            pg = ThrowawayPostgres().start()
            stack.callback(pg.stop)
            database_url = f"postgres://postgres@127.0.0.1:{pg.port}/postgres"
        s = stack.enter_context(
            served(
                args.work, args.n, args.shards, args.spec, query_products(args.n, 300),
                prefix="text-search-bench-", database_url=database_url,
            )
        )  # fmt: skip
        view = ViewCaller(web_env(s.work / "data", s.redis.url, args.shards, database_url))
        from catalog import search
        from catalog.text_search import max_depth

        texts = queries(args.n, args.queries)
        vectors = fresh_vectors(args.queries, seed=5)
        cache = search.query_encoder().cache
        assert cache is not None
        for kind in texts:
            for text, vector in zip(texts[kind], vectors, strict=True):
                cache.put("text", search.normal_text(text), vector)
        steps = StepTimes()
        request_ms: dict[str, list[float]] = collections.defaultdict(list)
        cells = [(kind, mode) for kind in texts for mode in MODES]
        for round_ in range(args.rounds + 1):  # the first round warms every path, unrecorded
            for i in range(args.queries):
                t0 = time.perf_counter()
                s.search.search(vectors[i], PAGE, SearchFilter())
                took = (time.perf_counter() - t0) * 1e3
                if round_:
                    request_ms["baseline"].append(took)
                for kind, mode in cells:
                    steps.label = f"{kind} {mode}" if round_ else ""
                    q = texts[kind][i].replace(" ", "+")
                    t0 = time.perf_counter()
                    status, body = view.get(f"/api/search/?q={q}&mode={mode}&k={PAGE}")
                    took = (time.perf_counter() - t0) * 1e3
                    if status != 200:
                        raise RuntimeError(f"{kind} {mode}: HTTP {status}: {body[:300]!r}")
                    if round_:
                        request_ms[steps.label].append(took)

    base = pct(request_ms["baseline"], 50)
    names = list(dict.fromkeys(STEPS.values()))
    print(
        f"\ntext_search_bench: {args.n:,} products x {DIM} in {args.shards} shards "
        f"({s.builds[0]['spec']}, {'PostgreSQL' if args.postgres else 'SQLite'} catalog), "
        f"page of {PAGE}, depth {max_depth()}; "
        f"{len(request_ms['baseline'])} requests a row; load avg {load_before:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end"
    )
    print(f"{'query, mode':<18}{'p50 ms':>8}{'p99 ms':>8}{'x base':>8}  "
          + "".join(f"{name:>17}" for name in names))  # fmt: skip
    print(f"{'RPC, k=20 (base)':<18}{base:8.2f}{pct(request_ms['baseline'], 99):8.2f}{1:8.2f}")
    for kind, mode in cells:
        label = f"{kind} {mode}"
        ms = request_ms[label]
        row = f"{label:<18}{pct(ms, 50):8.2f}{pct(ms, 99):8.2f}{pct(ms, 50) / base:8.2f}  "
        for name in names:
            got = steps.ms.get((label, name))
            row += f"{pct(got, 50):17.2f}" if got else f"{'-':>17}"
        print(row)
    common, rare = pct(request_ms["common hybrid"], 50), pct(request_ms["rare hybrid"], 50)
    words = pct(steps.ms["common hybrid", "words"], 50)
    print(
        f"text_search_bench {args.n:,}: hybrid (the default) p50 {rare:.1f} ms for a rare word, "
        f"{common:.1f} ms with a word of every title ({words:.1f} of it the words' ranking), "
        f"{pct(request_ms['all common hybrid'], 50):.1f} ms with two; "
        f"vector {pct(request_ms['rare vector'], 50):.1f} ms; the RPC alone at k=20 "
        f"{base:.2f} ms; {time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
