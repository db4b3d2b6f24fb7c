"""Training paths: brute-force k-means for few lists, graph assignment for many, no GPU here."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from tests.workers.index.conftest import random_vectors
from workers.index import gpu
from workers.index.spec import choose_spec


@pytest.mark.parametrize("graph_from", [10**9, 64])
def test_ivf_training_finds_every_vector_again(graph_from: int, monkeypatch) -> None:
    monkeypatch.setattr(gpu, "GRAPH_ASSIGN_NLIST", graph_from)
    x = random_vectors(6000, seed=1)
    index = faiss.index_factory(x.shape[1], "IVF64_HNSW16,Flat", faiss.METRIC_INNER_PRODUCT)
    assert gpu.train_index(index, x, n_threads=1) == "cpu"  # no GPU on this machine
    ivf = faiss.extract_index_ivf(index)
    assert index.is_trained
    assert ivf.clustering_index is None  # the helper index is dropped
    index.add(x)
    ivf.nprobe = 8
    _, found = index.search(x[:200], 1)
    assert (found[:, 0] == np.arange(200)).mean() > 0.95


def test_auto_spec_uses_a_graph_quantizer_for_many_lists() -> None:
    assert choose_spec(1_000_000, 512).factory == "IVF4096,Flat"
    assert choose_spec(10_000_000, 512).factory == "OPQ32,IVF16384_HNSW32,PQ32"
