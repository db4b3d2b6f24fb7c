"""The benches' synthetic catalog, built once into a work folder: the shards (built with
build_bulk by bench/search_data.py, in parallel) and the catalog database whose rows
match the vectors (bench/search_db.py), reused while what was asked is the same."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.search_procs import web_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def prepare(args: argparse.Namespace, work: Path, query_ids: np.ndarray, query_vecs: np.ndarray):
    """Build the shards into the artifact store and the catalog DB (in parallel), unless `work`
    has them."""
    marker = work / "ready.json"
    want = {
        "n": args.n,
        "shards": args.shards,
        "spec": args.spec,
        "queries": len(query_ids),
        "store": 1,
    }
    database_url = getattr(args, "database_url", None)
    if database_url:
        want["database"] = database_url
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("want") == want:
            print(f"reusing shards and database in {work}")
            return done["builds"]
    for path in (work / "index", work / "data"):
        shutil.rmtree(path, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    builds = []
    for shard in range(args.shards):
        cmd = [
            sys.executable, str(HERE / "search_data.py"), "build",
            "--shard", str(shard), "--shards", str(args.shards), "--n", str(args.n),
            "--spec", args.spec, "--index-dir", str(work / "index"),
            "--out", str(work / f"build-{shard}.json"),
        ]  # fmt: skip
        log = (logs / f"build-{shard}.log").open("w")
        builds.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    env = web_env(work / "data", "redis://127.0.0.1:1/0", args.shards, database_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    np.savez(work / "query-embeddings.npz", ids=query_ids, vectors=query_vecs)
    db = subprocess.run(
        [sys.executable, str(HERE / "search_db.py"), "--n", str(args.n),
         "--embeddings", str(work / "query-embeddings.npz")],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    print(db.stdout.strip(), flush=True)
    for shard, proc in enumerate(builds):
        if proc.wait() != 0:
            raise RuntimeError(f"building shard {shard} failed; see {logs}/build-{shard}.log")
    facts = [json.loads((work / f"build-{s}.json").read_text()) for s in range(args.shards)]
    print(f"shards and database ready in {time.perf_counter() - started:.0f}s")
    marker.write_text(json.dumps({"want": want, "builds": facts}))
    return facts
