"""FAISS OpenMP thread counts, set explicitly.

On a busy box two OpenMP threads make single-query search several times slower than one
(they spin on a barrier), so searches default to one thread (FAISS_SEARCH_THREADS) and
training threads are a separate setting (FAISS_TRAIN_THREADS, workers/config/index.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import faiss

from workers.config import IndexConfig

TRAIN_THREADS = IndexConfig.train_threads  # the default; builds are given the configured count


def use_search_threads(n: int = IndexConfig.search_threads) -> None:
    """Set the calling thread's FAISS thread count for searching (OpenMP counts are per
    thread: call it in every thread that searches)."""
    faiss.omp_set_num_threads(max(1, n))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Temporarily use `n` FAISS threads (for training and large adds), then restore."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
