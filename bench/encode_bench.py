"""Encoding throughput: the raw CLIP forward pass against the whole encode pipeline.

The model is the openai/clip-vit-base-patch32 architecture with random weights
(the same compute as the real model; weights cannot be downloaded here). For each
batch size the same images go through

  raw:      model forward on already preprocessed pixels (+ normalise, copy to host)
  pipeline: JPEG bytes -> safe decode -> preprocess (thread pool, overlapping the
            forward) -> forward -> store (sqlite insert of the float32 bytes, one
            commit per batch) -> log append (XADD to a private redis-server)

in alternating rounds, so that load from other processes hits both alike. The
ratio pipeline / raw is the headline: the target is >= 0.8 at batch 64. Texts
are measured the same way (tokenise + forward + store + log against the forward
on pre-tokenised ids), and bf16 weights against fp32 (speed and cosine).

    .venv/bin/python bench/encode_bench.py --quick     # under 2 minutes
    .venv/bin/python bench/encode_bench.py             # more rounds, bf16 pipeline too
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers.encoding.encoder import ClipEncoder, l2_normalise  # noqa: E402
from workers.encoding.hf_compat import features_tensor  # noqa: E402
from workers.encoding.images import ImageLimits, load_image_bytes  # noqa: E402
from workers.encoding.pipeline import EncodedItem  # noqa: E402
from workers.encoding.tiny_clip import build_vit_b32_random  # noqa: E402
from workers.redis_process import RedisProcess  # noqa: E402
from workers.rpc.redis_url import redis_from_url  # noqa: E402

WORDS_TEXT = (
    "red blue black white green leather cotton wool running ankle boots sneakers shirt "
    "dress jacket coat bag watch lamp chair sofa table women men kids summer winter "
    "waterproof lightweight classic slim fit vintage modern wooden steel ceramic"
)


@dataclass
class Row:
    kind: str
    precision: str
    batch: int
    n: int
    raw_per_s: float
    pipe_per_s: float | None
    store_ms_per_batch: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.pipe_per_s is None else self.pipe_per_s / self.raw_per_s


# -- inputs -----------------------------------------------------------------


def make_jpegs(n: int, seed: int = 0, size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """Photo-like JPEGs (smooth colour fields with noise and a few shapes)."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for _ in range(n):
        channels = []
        for _c in range(3):
            fx, fy = rng.uniform(0.002, 0.02, 2)
            phase = rng.uniform(0, 6.28)
            channels.append(127 + 100 * np.sin(xs * fx + ys * fy + phase))
        pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        pixels[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.uniform(0, 255, 3)
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    return out


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(rng.choice(WORDS_TEXT.split(), size=int(rng.integers(4, 12)))) for _ in range(n)
    ]


# -- the store and log steps --------------------------------------------------


class Sink:
    """What an encode task does after the forward: one sqlite commit and one Redis
    pipeline of XADDs per batch."""

    def __init__(self, db_path: Path, redis_url: str, model_name: str, dim: int) -> None:
        self.db = sqlite3.connect(db_path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS embedding (id INTEGER PRIMARY KEY, kind TEXT, model TEXT,"
            " dim INTEGER, sha256 TEXT, vector BLOB)"
        )
        self.redis = redis_from_url(redis_url)
        self.model_name = model_name
        self.dim = dim
        self.seconds = 0.0
        self.batches = 0
        self.next_id = 0

    def write(self, kind: str, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        start = time.perf_counter()
        ids = range(self.next_id, self.next_id + len(rows))
        self.next_id += len(rows)
        self.db.executemany(
            "INSERT INTO embedding (id, kind, model, dim, sha256, vector) VALUES (?,?,?,?,?,?)",
            [
                (i, kind, self.model_name, self.dim, sha, vec.astype(np.float32).tobytes())
                for i, (sha, vec) in zip(ids, rows, strict=True)
            ],
        )
        self.db.commit()
        pipe = self.redis.pipeline(transaction=False)
        for i, (_sha, vec) in zip(ids, rows, strict=True):
            pipe.xadd(
                "bench:shard:0:log",
                {"op": "upsert", "id": i, "model": self.model_name, "vec": vec.tobytes()},
            )
        pipe.execute()
        self.seconds += time.perf_counter() - start
        self.batches += 1

    def reset_timer(self) -> None:
        self.seconds, self.batches = 0.0, 0

    def close(self) -> None:
        self.db.close()
        self.redis.close()


# -- measurements ---------------------------------------------------------------


def raw_images(encoder: ClipEncoder, pixels: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = [encoder.encode_pixels(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    return time.perf_counter() - start, np.concatenate(out)


def pipeline_images(
    encoder: ClipEncoder, jpegs: Sequence[bytes], batch: int, sink: Sink, limits: ImageLimits
) -> float:
    start = time.perf_counter()
    pending: list[tuple[str, np.ndarray]] = []
    results = encoder.encode_image_sources(
        jpegs, lambda data: load_image_bytes(data, limits=limits), batch_size=batch
    )
    for item in results:
        if not isinstance(item, EncodedItem):
            raise RuntimeError(f"benchmark image failed: {item}")
        pending.append((item.sha256 or "", item.vector))
        if len(pending) == batch:
            sink.write("image", pending)
            pending = []
    if pending:
        sink.write("image", pending)
    return time.perf_counter() - start


def tokenise(
    encoder: ClipEncoder, texts: Sequence[str], batch: int
) -> list[dict[str, torch.Tensor]]:
    return [
        dict(encoder.tokenizer(list(texts[i : i + batch]), padding=True, return_tensors="pt"))  # type: ignore[operator]
        for i in range(0, len(texts), batch)
    ]


def raw_texts(encoder: ClipEncoder, batches: list[dict[str, torch.Tensor]]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for inputs in batches:
            features = features_tensor(encoder.model.get_text_features(**inputs))
            l2_normalise(features).cpu().numpy()
    return time.perf_counter() - start


def pipeline_texts(encoder: ClipEncoder, texts: Sequence[str], batch: int, sink: Sink) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        vectors = encoder.encode_texts(chunk)
        sink.write(
            "text",
            [
                (hashlib.sha256(t.encode()).hexdigest(), v)
                for t, v in zip(chunk, vectors, strict=True)
            ],
        )
    return time.perf_counter() - start


def measurement_plan(batch: int, quick: bool, rounds: int | None) -> tuple[int, int]:
    """(rounds, images per round) for one batch size: whole batches, few at batch 1."""
    if quick:
        return rounds or (1 if batch >= 64 else 2), 2 if batch == 1 else batch
    return rounds or 3, 4 if batch == 1 else (batch if batch >= 64 else 2 * batch)


def interleaved(
    rounds: int, first: Callable[[int], float], second: Callable[[int], float]
) -> tuple[float, float]:
    """Total seconds of `first` and `second`, run alternately `rounds` times."""
    a = b = 0.0
    for r in range(rounds):
        a += first(r)
        b += second(r)
    return a, b


# -- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few images, under 2 minutes")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/encode_bench_vit_b32"))
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per batch size")
    parser.add_argument("--threads", type=int, default=2, help="loader threads in the pipeline")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    batches = [int(b) for b in args.batches.split(",")]
    plan = {b: measurement_plan(b, args.quick, args.rounds) for b in batches}  # (rounds, n/round)
    text_batch = max(batches)
    text_rounds = args.rounds or (1 if args.quick else 3)
    bf16_batch = 16 if args.quick and 16 in batches else max(batches)

    t0 = time.perf_counter()
    build_vit_b32_random(args.model_dir)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fp32 = ClipEncoder.load(str(args.model_dir), loader_threads=args.threads)
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in fp32.model.parameters()) / 1e6
    print(
        f"model {fp32.model_name}: {n_params:.0f} M parameters, dim {fp32.dim}, "
        f"{fp32.placement.describe()}, torch threads {torch.get_num_threads()}, "
        f"build/reuse {build_s:.1f} s, load {load_s:.1f} s"
    )

    n_images = max(r * k for r, k in plan.values())
    jpegs = make_jpegs(n_images)
    limits = ImageLimits()
    pixels = fp32.preprocess([load_image_bytes(j, limits=limits).image for j in jpegs])
    texts = make_texts(text_batch * text_rounds)
    print(
        f"{n_images} JPEGs 640x480 (mean {np.mean([len(j) for j in jpegs]) / 1024:.0f} KiB), "
        f"{len(texts)} texts; raw and pipeline alternate in rounds on the same inputs"
    )

    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="encode_bench_") as tmp,
        RedisProcess(Path(tmp) / "redis") as server,
    ):
        sink = Sink(Path(tmp) / "store.sqlite3", server.url, fp32.model_name, fp32.dim)
        fp32.encode_pixels(pixels[:1])  # first-call set-up out of the timings

        for b in batches:
            rounds, k = plan[b]
            fp32.encode_pixels(pixels[: min(b, 4)])
            sink.reset_timer()
            raw_s, pipe_s = interleaved(
                rounds,
                lambda r, b=b, k=k: raw_images(fp32, pixels[r * k : (r + 1) * k], b)[0],
                lambda r, b=b, k=k: pipeline_images(
                    fp32, jpegs[r * k : (r + 1) * k], b, sink, limits
                ),
            )
            n = k * rounds
            rows.append(
                Row(
                    "image", "fp32", b, n, n / raw_s, n / pipe_s, 1000 * sink.seconds / sink.batches
                )
            )
            print_row(rows[-1])

        token_batches = tokenise(fp32, texts, text_batch)
        raw_texts(fp32, token_batches[:1])
        sink.reset_timer()
        per = len(texts) // text_rounds
        raw_s, pipe_s = interleaved(
            text_rounds,
            lambda r: raw_texts(fp32, token_batches[r : r + 1]),
            lambda r: pipeline_texts(fp32, texts[r * per : (r + 1) * per], text_batch, sink),
        )
        rows.append(
            Row(
                "text",
                "fp32",
                text_batch,
                len(texts),
                len(texts) / raw_s,
                len(texts) / pipe_s,
                1000 * sink.seconds / sink.batches,
            )
        )
        print_row(rows[-1])

        cosines: dict[str, float] = {}
        if not args.no_bf16:
            b = bf16_batch
            n = b if args.quick else 2 * b
            bf16 = ClipEncoder.load(str(args.model_dir), bf16=True, loader_threads=args.threads)
            bf16.encode_pixels(pixels[: min(b, 4)])
            ref_s, ref = raw_images(fp32, pixels[:n], b)
            bf_s, ours = raw_images(bf16, pixels[:n], b)
            cosines["image"] = float((ours * ref).sum(axis=1).min())
            pipe = None
            if not args.quick:
                pipe = n / pipeline_images(bf16, jpegs[:n], b, sink, limits)
            rows.append(Row("image", "fp32 ref", b, n, n / ref_s, None))
            rows.append(Row("image", "bf16", b, n, n / bf_s, pipe))
            print_row(rows[-2])
            print_row(rows[-1])
            nt = 16 if args.quick else text_batch
            text_ref = fp32.encode_texts(texts[:nt])
            bf16.encode_texts(texts[:2])
            t0 = time.perf_counter()
            text_bf = bf16.encode_texts(texts[:nt])
            bf_t = time.perf_counter() - t0
            cosines["text"] = float((text_bf * text_ref).sum(axis=1).min())
            rows.append(Row("text", "bf16", min(nt, bf16.batch_size), nt, nt / bf_t, None))
            print_row(rows[-1])
            del bf16
        sink.close()

    print_table(rows, cosines)
    plot(rows, args.out / "encode_bench.png")
    head = next(
        r for r in rows if r.kind == "image" and r.precision == "fp32" and r.batch == max(batches)
    )
    bf = next((r for r in rows if r.precision == "bf16" and r.kind == "image"), None)
    ref = next((r for r in rows if r.precision == "fp32 ref"), None)
    bf_note = (
        f"; bf16 raw {bf.raw_per_s / ref.raw_per_s:.2f}x fp32 (min cosine {cosines['image']:.5f})"
        if bf and ref
        else ""
    )
    verdict = "meets" if (head.ratio or 0) >= 0.8 else "MISSES"
    print(
        f"SUMMARY encode_bench: ViT-B/32 fp32 batch {head.batch}: pipeline "
        f"{head.pipe_per_s:.2f} img/s = {head.ratio:.2f}x raw forward {head.raw_per_s:.2f} img/s "
        f"({verdict} the 0.8x target){bf_note}"
    )


def print_row(row: Row) -> None:
    pipe = "-" if row.pipe_per_s is None else f"{row.pipe_per_s:.2f}"
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
    print(
        f"  measured {row.kind:5s} {row.precision:8s} batch {row.batch:3d}: "
        f"raw {row.raw_per_s:.2f}/s pipeline {pipe}/s {ratio}",
        flush=True,
    )


def print_table(rows: list[Row], cosines: dict[str, float]) -> None:
    print()
    print(
        f"{'kind':6s} {'weights':9s} {'batch':>5s} {'n':>5s} {'raw/s':>9s} {'pipeline/s':>11s} "
        f"{'pipe/raw':>9s} {'store+log ms/batch':>19s}"
    )
    for r in rows:
        pipe = "-" if r.pipe_per_s is None else f"{r.pipe_per_s:.2f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        store = "-" if r.store_ms_per_batch is None else f"{r.store_ms_per_batch:.1f}"
        print(
            f"{r.kind:6s} {r.precision:9s} {r.batch:5d} {r.n:5d} {r.raw_per_s:9.2f} {pipe:>11s} "
            f"{ratio:>9s} {store:>19s}"
        )
    for kind, cos in cosines.items():
        print(f"bf16 vs fp32 {kind} embeddings: min cosine {cos:.6f}")


def plot(rows: list[Row], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    image = [r for r in rows if r.kind == "image" and r.precision == "fp32"]
    if not image:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(image))
    ax.bar(x - 0.2, [r.raw_per_s for r in image], 0.4, label="raw forward")
    ax.bar(x + 0.2, [r.pipe_per_s or 0 for r in image], 0.4, label="whole pipeline")
    for i, r in enumerate(image):
        ax.text(i + 0.2, (r.pipe_per_s or 0) * 1.02, f"{r.ratio:.2f}x", ha="center", fontsize=8)
    ax.set_xticks(x, [f"batch {r.batch}" for r in image])
    ax.set_ylabel("images / s")
    ax.set_title("ViT-B/32 (random weights), fp32, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
