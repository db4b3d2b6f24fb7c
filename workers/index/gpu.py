"""Training on a GPU through FAISS when one is present; the CPU otherwise.

Nothing here requires a GPU: with ``faiss-cpu`` (no ``index_cpu_to_all_gpus``) or no device,
every function falls back to the CPU path by itself.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np

from workers.index.spec import HNSW_QUANTIZER_NLIST
from workers.index.threads import TRAIN_THREADS, threads

# k-means assigns through an HNSW graph (CPU only) where the quantizer is one too
GRAPH_ASSIGN_NLIST = HNSW_QUANTIZER_NLIST

logger = logging.getLogger(__name__)


def gpu_count() -> int:
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


def train_index(index: faiss.Index, sample: np.ndarray, n_threads: int = TRAIN_THREADS) -> str:
    """Train `index` on `sample`; the IVF coarse k-means runs on the GPUs when available.

    Returns "gpu" or "cpu" (recorded with the build).
    """
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    ivf = faiss.try_extract_index_ivf(index)
    device = "cpu"
    if ivf is not None and gpu_count() > 0 and hasattr(faiss, "index_cpu_to_all_gpus"):
        flat = (
            faiss.IndexFlatIP(ivf.d)
            if ivf.metric_type == faiss.METRIC_INNER_PRODUCT
            else (faiss.IndexFlatL2(ivf.d))
        )
        ivf.clustering_index = faiss.index_cpu_to_all_gpus(flat)
        device = "gpu"
    elif ivf is not None and ivf.nlist >= GRAPH_ASSIGN_NLIST:
        # k-means assigns every training point to its nearest centroid each iteration:
        # by brute force that is points x centroids distances an iteration; a graph over
        # the centroids finds them approximately, in a small fraction of that.
        ivf.clustering_index = faiss.IndexHNSWFlat(ivf.d, 32)
    try:
        with threads(n_threads):
            index.train(sample)
    finally:
        if ivf is not None:
            ivf.clustering_index = None
    logger.info("trained %s on %d vectors (%s)", type(index).__name__, len(sample), device)
    return device


def kmeans(x: np.ndarray, k: int, niter: int = 20, seed: int = 1) -> np.ndarray:
    """Spherical k-means centroids, on the GPU when present."""
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, spherical=True, gpu=gpu_count() > 0, verbose=False
    )
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km.centroids
