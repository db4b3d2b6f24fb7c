"""The GPU backend: a shard whose bulk is also on a GPU answers batches as the CPU does.

Skipped without a GPU (faiss-cpu, or no device): `bench/gpu_check.sh` runs them where
one is. The first test runs everywhere: without a GPU nothing changes."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from tests.workers.index.conftest import DIM, attrs_for, random_vectors
from workers.config import worker_config
from workers.index.backends.gpu import GpuBackend, gpu_count
from workers.index.shard import Shard
from workers.index.spec import SearchParams
from workers.index.types import SearchFilter

needs_gpu = pytest.mark.skipif(gpu_count() == 0, reason="faiss finds no GPU here")
EXACT = SearchParams(nprobe=8, ef_search=512, rerank_k=4000)
GPU_MIN_BATCH = worker_config().index.gpu_min_batch


def _shard(spec: str, tmp_path) -> tuple[Shard, np.ndarray, np.ndarray]:
    shard = Shard(DIM, "clip-test", spec, work_dir=tmp_path)
    ids = np.arange(3000, dtype=np.int64) * 2 + 1
    x = random_vectors(3000, seed=41)
    shard.upsert(ids, x, attrs_for(ids))
    shard.compact()  # trained: the compacted state gets its GPU copy
    return shard, ids, x


def test_without_a_gpu_the_backend_stays_on_the_cpu(tmp_path) -> None:
    shard, _, _ = _shard("IVF8,Flat", tmp_path)
    assert isinstance(shard.state.backend, GpuBackend) == (gpu_count() > 0)


@pytest.mark.parametrize("spec", ["IVF8,Flat", "IVF8,PQ4x4"])
def test_a_copy_s_hits_lose_removed_slots_and_gain_fresh_ones(spec: str, tmp_path) -> None:
    """What the GPU backend does around its copy (removed and filtered slots dropped from
    its hits, fresh vectors added to it), checked everywhere with the copy held on the
    CPU: a second FAISS index made from the bulk, answered through the same calls."""
    shard, ids, x = _shard(spec, tmp_path)
    cpu = getattr(shard.state.backend, "cpu", shard.state.backend)
    copy = faiss.clone_index(cpu.index)
    rerank = getattr(cpu, "rerank", None)
    wrapped = GpuBackend(cpu, copy, rerank.refined(copy) if rerank else None, "ivf")
    shard.state = replace(shard.state, backend=wrapped)
    shard.delete(ids[:100])
    fresh_ids = np.arange(50_001, 50_101, 2, dtype=np.int64)
    fresh = random_vectors(50, seed=42)
    shard.upsert(fresh_ids, fresh, attrs_for(fresh_ids))
    assert copy.ntotal == len(ids) + len(fresh_ids)  # fresh ones reach it, removed stay
    queries = np.vstack([x[:GPU_MIN_BATCH], fresh[:GPU_MIN_BATCH]])
    for flt in (None, SearchFilter(in_stock=True)):
        through_copy = shard.search(queries, 10, flt, params=EXACT)
        shard.state = replace(shard.state, backend=cpu)
        on_cpu = shard.search(queries, 10, flt, params=EXACT)
        shard.state = replace(shard.state, backend=wrapped)
        np.testing.assert_array_equal(through_copy.image_ids, on_cpu.image_ids)
        assert not np.isin(through_copy.image_ids, ids[:100]).any()


@needs_gpu
@pytest.mark.parametrize("spec", ["IVF8,Flat", "IVF8,PQ4x4", "HNSW16"])
def test_a_gpu_copy_answers_batches_as_the_cpu_does_after_writes(spec: str, tmp_path) -> None:
    shard, ids, x = _shard(spec, tmp_path)
    backend = shard.state.backend
    if spec.startswith("HNSW") and not isinstance(backend, GpuBackend):
        pytest.skip("this faiss offers no GPU graph index (CAGRA)")
    assert isinstance(backend, GpuBackend)
    shard.delete(ids[:100])  # removed after the copy was made
    fresh_ids = np.arange(50_001, 50_101, 2, dtype=np.int64)
    fresh = random_vectors(50, seed=42)
    shard.upsert(fresh_ids, fresh, attrs_for(fresh_ids))  # added after it
    queries = np.vstack([x[:GPU_MIN_BATCH], fresh[:GPU_MIN_BATCH]])
    for flt in (None, SearchFilter(in_stock=True)):
        on_gpu = shard.search(queries, 10, flt, params=EXACT)
        cpu = shard.state.backend.cpu  # the same state searched on the CPU alone
        shard.state = replace(shard.state, backend=cpu)
        on_cpu = shard.search(queries, 10, flt, params=EXACT)
        shard.state = replace(shard.state, backend=backend)
        assert not np.isin(on_gpu.image_ids, ids[:100]).any()
        same = [
            len(set(a) & set(b)) for a, b in zip(on_gpu.image_ids, on_cpu.image_ids, strict=True)
        ]
        assert sum(same) >= 0.95 * on_cpu.image_ids.size  # a GPU graph is approximate
    found = shard.search(fresh[:GPU_MIN_BATCH], 1, params=EXACT).image_ids[:, 0]
    np.testing.assert_array_equal(found, fresh_ids[:GPU_MIN_BATCH])
