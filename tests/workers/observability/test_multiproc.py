"""Multiprocess metrics: real processes write into one directory, one reader sums them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from workers.observability.multiproc import forget_dead, pids_in, render

ROOT = Path(__file__).resolve().parents[3]

WRITER = """
import sys
from workers.observability import metrics as m
m.ENCODE_IMAGES.inc(3)
m.RPC_BATCH_SIZE.labels("shard-0").observe(4)
m.SHARD_VECTORS.labels("0").set(100)
print("ready", flush=True)
sys.stdin.readline()
"""


def samples(directory: Path) -> dict[str, list]:
    body, content_type = render(directory)
    assert content_type.startswith("text/plain")
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def start_writer(directory: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_processes_are_summed_and_dead_ones_forgotten(tmp_path: Path) -> None:
    directory = tmp_path / "prom"  # the metrics module creates it
    writers = [start_writer(directory), start_writer(directory)]
    try:
        assert pids_in(directory) == {w.pid for w in writers}
        found = samples(directory)
        assert sum(s.value for s in found["vps_encode_images_total"]) == 6
        assert [s.value for s in found["vps_rpc_batch_size_count"]] == [2]
        vectors = found["vps_shard_vectors"]
        assert sorted(s.labels["pid"] for s in vectors) == sorted(str(w.pid) for w in writers)

        # One writer exits: its live gauge goes, its counts stay in the host's totals.
        gone = writers.pop(0)
        gone.communicate("\n", timeout=10)
        assert forget_dead(directory) == [gone.pid]
        found = samples(directory)
        assert [s.labels["pid"] for s in found["vps_shard_vectors"]] == [str(writers[0].pid)]
        assert sum(s.value for s in found["vps_encode_images_total"]) == 6
    finally:
        for writer in writers:
            writer.communicate("\n", timeout=10)
