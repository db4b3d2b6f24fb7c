"""Soak: mixed search and update traffic against a whole private deployment.

Reports errors (target 0), search latency percentiles over time, and the memory of
every process at the start and the end (target: no growth beyond 10%).

    python bench/load.py              # 10 minutes
    python bench/load.py --quick      # about 1 minute of traffic
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import Stack

WORDS = [
    "red",
    "leather",
    "boots",
    "watch",
    "gold",
    "lamp",
    "striped",
    "shirt",
    "mug",
    "rug",
    "blue",
    "vintage",
    "bag",
    "hat",
    "star",
    "checked",
    "round",
    "modern",
]
OUT = Path(__file__).resolve().parent / "out"


@dataclass
class Sample:
    at: float
    kind: str
    ms: float
    status: int


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, started: float, status: int) -> None:
        with self.lock:
            self.samples.append(Sample(started, kind, (time.monotonic() - started) * 1e3, status))


class Client:
    """One keep-alive HTTP connection per thread (the load generator is outside the servers)."""

    def __init__(self, base: str, token: str | None = None) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.headers = {"Authorization": f"Token {token}"} if token else {}

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        try:
            self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return 599, b""


def png_bytes(seed: int) -> bytes:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", (96, 96), (240, 240, 240))
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    ImageDraw.Draw(image).ellipse([10, 10, 86, 86], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(field_name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def searcher(
    base: str, product_ids: list[int], stop: threading.Event, rec: Recorder, seed: int
) -> None:
    client, rng = Client(base), random.Random(seed)
    while not stop.is_set():
        started = time.monotonic()
        if rng.random() < 0.5:
            query = {"q": " ".join(rng.sample(WORDS, 2)), "k": 20}
            if rng.random() < 0.3:
                query["in_stock"] = "true"
            status, _ = client.request("GET", "/api/search/?" + urlencode(query))
            rec.add("text", started, status)
        else:
            status, _ = client.request(
                "GET", f"/api/products/{rng.choice(product_ids)}/similar/?k=20"
            )
            rec.add("similar", started, status)


def updater(
    base: str, token: str, rate: float, stop: threading.Event, rec: Recorder, created: list[int]
) -> None:
    """Creates products with a photo, changes prices, deletes some of its own products."""
    client, rng, n = Client(base, token), random.Random(99), 0
    while not stop.is_set():
        started = time.monotonic()
        action = rng.random()
        if action < 0.6 or len(created) < 5:
            n += 1
            body = json.dumps(
                {
                    "sku": f"LOAD-{uuid.uuid4().hex[:10]}",
                    "title": f"Load {n}",
                    "price": f"{rng.uniform(5, 500):.2f}",
                }
            ).encode()
            status, raw = client.request(
                "POST", "/api/products/", body, {"Content-Type": "application/json"}
            )
            rec.add("create", started, status)
            if status == 201:
                pid = json.loads(raw)["id"]
                data, ctype = multipart("image", f"{n}.png", png_bytes(n))
                status, _ = client.request(
                    "POST", f"/api/products/{pid}/images/", data, {"Content-Type": ctype}
                )
                rec.add("upload", started, status)
                created.append(pid)
        elif action < 0.85:
            pid = rng.choice(created)
            body = json.dumps({"price": f"{rng.uniform(5, 500):.2f}"}).encode()
            status, _ = client.request(
                "PATCH", f"/api/products/{pid}/", body, {"Content-Type": "application/json"}
            )
            rec.add("update", started, status)
        else:
            pid = created.pop(rng.randrange(len(created)))
            status, _ = client.request("DELETE", f"/api/products/{pid}/")
            rec.add("delete", started, status)
        stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - started)))


def wait_indexed(base: str, timeout: float = 600.0) -> None:
    client = Client(base)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, raw = client.request("GET", "/api/products/?index_state=pending&page_size=1")
        encoding = client.request("GET", "/api/products/?index_state=encoding&page_size=1")
        if (
            status == 200
            and json.loads(raw)["count"] == 0
            and json.loads(encoding[1])["count"] == 0
        ):
            return
        time.sleep(1)
    raise RuntimeError("the catalog was not indexed in time")


def all_ids(base: str) -> list[int]:
    client, ids, page = Client(base), [], 1
    while True:
        status, raw = client.request("GET", f"/api/products/?page_size=100&page={page}")
        if status != 200:
            return ids
        body = json.loads(raw)
        ids += [p["id"] for p in body["results"]]
        if not body["next"]:
            return ids
        page += 1


def report(rec: Recorder, duration: float, buckets: int, memory: tuple[dict, dict]) -> str:
    samples = rec.samples
    t0 = min(s.at for s in samples)
    searches = [s for s in samples if s.kind in {"text", "similar"}]
    errors = [s for s in samples if s.status >= 400]
    print(
        f"\n{'window':>12} {'searches':>9} {'q/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'updates':>8} {'errors':>7}"
    )
    width = duration / buckets
    series = []
    for b in range(buckets):
        lo, hi = t0 + b * width, t0 + (b + 1) * width
        window = [s for s in searches if lo <= s.at < hi]
        updates = [s for s in samples if lo <= s.at < hi and s not in window]
        errs = sum(s.status >= 400 for s in samples if lo <= s.at < hi)
        ms = np.array([s.ms for s in window]) if window else np.array([np.nan])
        p50, p99 = np.nanpercentile(ms, 50), np.nanpercentile(ms, 99)
        series.append((b * width, p50, p99))
        print(
            f"{b * width:>5.0f}-{(b + 1) * width:<5.0f}s {len(window):>9} "
            f"{len(window) / width:>7.1f} {p50:>8.1f} {p99:>8.1f} {len(updates):>8} {errs:>7}"
        )
    print(f"\n{'process':>10} {'start MiB':>10} {'end MiB':>9} {'growth':>8}")
    start, end = memory
    worst = ("-", 0.0)
    for name in sorted(start):
        if name in end:
            growth = (end[name] - start[name]) / start[name] * 100
            worst = max(worst, (name, growth), key=lambda x: x[1])
            print(f"{name:>10} {start[name]:>10.1f} {end[name]:>9.1f} {growth:>+7.1f}%")
    kinds = sorted({s.kind for s in errors})
    if errors:
        print(
            "errors by kind/status:",
            {k: sorted({s.status for s in errors if s.kind == k}) for k in kinds},
        )
    _plot(series)
    all_ms = np.array([s.ms for s in searches])
    return (
        f"load: {len(searches)} searches + {len(samples) - len(searches)} writes in "
        f"{duration:.0f}s, {len(errors)} errors, search p50 {np.percentile(all_ms, 50):.1f} ms "
        f"p99 {np.percentile(all_ms, 99):.1f} ms, max memory growth {worst[1]:+.1f}% ({worst[0]})"
    )


def _plot(series: list[tuple[float, float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    OUT.mkdir(exist_ok=True)
    xs, p50, p99 = zip(*series, strict=True)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(xs, p50, marker=".", label="p50")
    ax.plot(xs, p99, marker=".", label="p99")
    ax.set_xlabel("seconds into the soak")
    ax.set_ylabel("search latency, ms")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "load.png")
    print(f"plot: {OUT / 'load.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--quick", action="store_true", help="60 s of traffic, small catalog")
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--search-threads", type=int, default=4)
    parser.add_argument("--writes-per-s", type=float, default=2.0)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.products = 60.0, 120
    with tempfile.TemporaryDirectory(prefix="vps-load-") as scratch:
        stack = Stack(Path(scratch))
        try:
            print("starting the stack (redis, web, encode worker, 2 shard workers)...")
            stack.start()
            stack.manage(
                "make_demo_catalog", "--n", str(args.products), "--out", str(Path(scratch) / "demo")
            )
            wait_indexed(stack.url)
            catalog = all_ids(stack.url)
            rec, stop, created = Recorder(), threading.Event(), []
            threads = [
                threading.Thread(target=searcher, args=(stack.url, catalog, stop, rec, i))
                for i in range(args.search_threads)
            ]
            threads.append(
                threading.Thread(
                    target=updater,
                    args=(stack.url, stack.token, args.writes_per_s, stop, rec, created),
                )
            )
            for thread in threads:
                thread.start()
            time.sleep(min(10.0, args.duration / 6))  # warm-up before the memory baseline
            memory_start = stack.memory()
            time.sleep(args.duration - min(10.0, args.duration / 6))
            memory_end = stack.memory()
            stop.set()
            for thread in threads:
                thread.join()
            summary = report(rec, args.duration, 10, (memory_start, memory_end))
        finally:
            stack.stop()
    print(summary)


if __name__ == "__main__":
    main()
