"""Relevance of text search by words, by pictures and both fused (issue 24), and its cost.

A private stack (bench/stack.py: Redis, SQLite, gunicorn, an encode and two shard
workers) serves a demo catalog (catalog/demo.py) whose right answers are known by how it
was made, and three kinds of queries ask for them:

- sku: a product's SKU ("DEMO-00042"): that product;
- brand+category: "Aster Shoes": that brand's products in that category (the titles say
  "sneaker" and "cap", never "shoes" or "hats": the words alone find only the brand);
- colour+kind: "red striped t-shirt", "blue mug" (words of the titles): the products
  of that colour, kind (and pattern, when named).

Each is asked at the API in mode keyword, vector and hybrid: nDCG@10 (binary gains) and
recall@10 (relevant found in the top 10 over min(10, relevant)). The pictures' side uses
a tiny CLIP fitted offline to other demo pictures (bench/demo_clip.py), or CLIP_MODEL
when set; with the random tiny model it would rank at random. Then the latency of
hybrid against vector-only text searches at the API, interleaved, same queries
(their query vectors cached after the first pass, as a popular query's are).

    python bench/relevance_bench.py --quick   # 200 products, < 2 minutes
    python bench/relevance_bench.py           # 400 products, more latency rounds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo_clip import fit  # noqa: E402
from bench.stack import Stack  # noqa: E402
from catalog.demo import CATEGORIES  # noqa: E402

MODES = ("keyword", "vector", "hybrid")
NOUN = {c.slug: c.noun for c in CATEGORIES}
CATEGORY_NAME = {c.slug: c.name for c in CATEGORIES}


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    relevant: frozenset[str]  # SKUs


def make_queries(rows: list[dict], per_kind: int, seed: int = 3) -> list[Query]:
    """Queries whose right answers follow from how the demo catalog was drawn."""
    rng = np.random.default_rng(seed)
    out: list[Query] = []
    for i in rng.choice(len(rows), size=min(per_kind, len(rows)), replace=False):
        out.append(Query("sku", str(rows[i]["sku"]), frozenset({str(rows[i]["sku"])})))
    groups: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        groups.setdefault((str(row["brand"]), str(row["category"])), set()).add(str(row["sku"]))
    keys = sorted(groups)
    for i in rng.choice(len(keys), size=min(per_kind, len(keys)), replace=False):
        brand, slug = keys[i]
        text = f"{brand} {CATEGORY_NAME[slug]}"
        out.append(Query("brand+category", text, frozenset(groups[keys[i]])))
    kinds: dict[tuple[str, str, str], set[str]] = {}
    for row in rows:
        colour, pattern = row["attributes"]["colour"], row["attributes"]["pattern"]
        for named in (pattern, ""):  # with the pattern, and any pattern
            kinds.setdefault((colour, named, str(row["category"])), set()).add(str(row["sku"]))
    keys3 = sorted(k for k in kinds if k[1] != "plain")
    for i in rng.choice(len(keys3), size=min(per_kind, len(keys3)), replace=False):
        colour, pattern, slug = keys3[i]
        text = " ".join(w for w in (colour, pattern, NOUN[slug]) if w)
        out.append(Query("colour+kind", text, frozenset(kinds[keys3[i]])))
    return out


def ndcg_at_10(found: list[str], relevant: frozenset[str]) -> float:
    gains = np.array([s in relevant for s in found[:10]], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, 12, dtype=np.float64))
    ideal = discounts[: min(10, len(relevant))].sum()
    return float((gains * discounts[: len(gains)]).sum() / ideal)


def recall_at_10(found: list[str], relevant: frozenset[str]) -> float:
    return len(set(found[:10]) & relevant) / min(10, len(relevant))


def ask(base: str, text: str, mode: str, k: int = 10) -> tuple[list[str], float]:
    """SKUs of the top k, and the request's wall time in ms."""
    query = urllib.parse.urlencode({"q": text, "mode": mode, "k": k, "facets": ""})
    started = time.perf_counter()
    with urllib.request.urlopen(f"{base}/api/search/?{query}", timeout=30) as response:  # noqa: S310
        body = json.loads(response.read())
    took = (time.perf_counter() - started) * 1e3
    return [hit["product"]["sku"] for hit in body["results"]], took


def wait_indexed(base: str, n: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    query = urllib.parse.urlencode({"q": "demo", "mode": "vector", "k": 1, "facets": ""})
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/search/?{query}", timeout=30) as r:  # noqa: S310
            if json.loads(r.read())["matched"] >= n:
                return
        time.sleep(1)
    raise RuntimeError("the demo catalog was not indexed in time")


def relevance(base: str, queries: list[Query]) -> dict[tuple[str, str], tuple[float, float]]:
    """(kind or "all", mode) -> mean (nDCG@10, recall@10)."""
    scores: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for query in queries:
        for mode in MODES:
            found, _ = ask(base, query.text, mode)
            pair = (ndcg_at_10(found, query.relevant), recall_at_10(found, query.relevant))
            scores.setdefault((query.kind, mode), []).append(pair)
            scores.setdefault(("all", mode), []).append(pair)
    return {key: tuple(np.mean(np.array(v), axis=0)) for key, v in scores.items()}


def latency(base: str, queries: list[Query], rounds: int) -> dict[str, np.ndarray]:
    """Wall ms per request of hybrid and vector-only, alternating request by request."""
    times: dict[str, list[float]] = {"vector": [], "hybrid": []}
    for query in queries:  # a first pass fills the query-vector cache
        ask(base, query.text, "vector", k=20)
    for r in range(rounds):
        for query in queries:
            order = ("vector", "hybrid") if r % 2 == 0 else ("hybrid", "vector")
            for mode in order:
                times[mode].append(ask(base, query.text, mode, k=20)[1])
    return {mode: np.array(v, dtype=np.float64) for mode, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 products, < 2 minutes")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "relevance")
    args = parser.parse_args()
    n, per_kind, rounds = (200, 16, 3) if args.quick else (400, 40, 6)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if "CLIP_MODEL" not in os.environ:
        os.environ["CLIP_MODEL"] = str(fit(args.work / "demo-clip"))
    model = Path(os.environ["CLIP_MODEL"]).name
    print(f"model {model}; fitted/loaded in {time.perf_counter() - started:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="relevance-") as scratch:
        stack = Stack(Path(scratch)).start()
        try:
            stack.manage("make_demo_catalog", "--n", str(n), "--out", str(Path(scratch) / "demo"))
            manifest = Path(scratch) / "demo" / "catalog.jsonl"
            rows = [json.loads(line) for line in manifest.read_text().splitlines()]
            wait_indexed(stack.url, n)
            print(f"{n} products indexed at {time.perf_counter() - started:.0f} s", flush=True)
            queries = make_queries(rows, per_kind)
            table = relevance(stack.url, queries)
            times = latency(stack.url, queries, rounds)
        finally:
            stack.stop()
    print(f"\nrelevance on the demo catalog ({n} products, {len(queries)} queries, {model})")
    print(f"{'queries':<16}{'n':>4}" + "".join(f"{m + ' nDCG':>14}{'R@10':>7}" for m in MODES))
    for kind in ("sku", "brand+category", "colour+kind", "all"):
        count = sum(1 for q in queries if q.kind == kind or kind == "all")
        cells = "".join(f"{table[kind, m][0]:>14.3f}{table[kind, m][1]:>7.3f}" for m in MODES)
        print(f"{kind:<16}{count:>4}{cells}")
    p50 = {mode: float(np.median(t)) for mode, t in times.items()}
    p90 = {mode: float(np.percentile(t, 90)) for mode, t in times.items()}
    print(f"\nAPI latency, text search k=20, {len(times['vector'])} requests each, interleaved")
    for mode in ("vector", "hybrid"):
        print(f"{mode:<8} p50 {p50[mode]:7.2f} ms   p90 {p90[mode]:7.2f} ms")
    ratio = p50["hybrid"] / p50["vector"]
    best = {m: table["all", m][0] for m in MODES}
    beats = best["hybrid"] > max(best["keyword"], best["vector"])
    print(
        f"summary: nDCG@10 keyword {best['keyword']:.3f} vector {best['vector']:.3f} "
        f"hybrid {best['hybrid']:.3f} (hybrid {'beats' if beats else 'does NOT beat'} both); "
        f"hybrid p50 {p50['hybrid']:.1f} ms = {ratio:.2f}x vector-only "
        f"({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
