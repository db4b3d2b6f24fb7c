"""Multiprocess metrics: real processes write into one directory, one reader sums them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from workers.observability.multiproc import forget_dead, pids_in, render

ROOT = Path(__file__).resolve().parents[3]

WRITER = """
import sys
from prometheus_client import Counter
from workers.observability import metrics as m
Counter("flower_events", "a library's own metric, as Flower defines").inc()
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


def test_only_this_service_s_metrics_and_each_process_s_own(tmp_path: Path) -> None:
    """A library's metrics written to the directory (Flower's `flower_*`) are not served;
    each live process's CPU, memory and descriptors are, labelled by its pid."""
    directory = tmp_path / "prom"
    writers = [start_writer(directory), start_writer(directory)]
    try:
        found = samples(directory)
        assert not [name for name in found if not name.startswith("vps_")], sorted(found)
        pids = {str(w.pid) for w in writers}
        for name in (
            "vps_process_resident_memory_bytes",
            "vps_process_cpu_seconds_total",
            "vps_process_open_fds",
            "vps_process_start_time_seconds",
        ):
            assert {s.labels["pid"] for s in found[name]} == pids, name
            assert all(s.value > 0 for s in found[name]), name
        gone = writers.pop(0)
        gone.communicate("\n", timeout=10)
        found = samples(directory)
        assert {s.labels["pid"] for s in found["vps_process_resident_memory_bytes"]} == {
            str(writers[0].pid)
        }
    finally:
        for writer in writers:
            writer.communicate("\n", timeout=10)


EVERY_METRIC = """
import sys
from prometheus_client.metrics import MetricWrapperBase
from workers.observability import metrics as m
touch = {"counter": "inc", "gauge": "set", "histogram": "observe"}
for metric in vars(m).values():
    if isinstance(metric, MetricWrapperBase):
        names = metric._labelnames
        child = metric.labels(*["x"] * len(names)) if names else metric
        getattr(child, touch[metric._type])(*([] if metric._type == "counter" else [1]))
print("ready", flush=True)
sys.stdin.readline()
"""
_ROW = re.compile(r"^\s*\| `(vps_\w+)` \| (\w+) \|([^|]*)\|")


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """README's Observability table: name -> (type, label names)."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            assert name not in rows, f"{name} documented twice"
            rows[name] = (kind, frozenset(re.findall(r"`(\w+)`", labels)))
    return rows


def exported(directory: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """What /metrics serves from `directory`: name as queried -> (type, label names)."""
    body, _ = render(directory)
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {label for sample in family.samples for label in sample.labels} - {"le"}
        found[name] = (family.type, frozenset(labels))
    return found


def test_the_documented_metrics_are_exactly_the_exported_ones(tmp_path: Path) -> None:
    """Every metric defined gets a value in a real process; the README's table names each
    one /metrics then serves, with its type and labels, and nothing else."""
    directory = tmp_path / "prom"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    proc = subprocess.Popen(
        [sys.executable, "-c", EVERY_METRIC],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        served = exported(directory)
    finally:
        proc.communicate("\n", timeout=10)
    assert served == documented()
