"""FAISS OpenMP thread counts, set explicitly.

On a busy 2-core box two OpenMP threads made single-query search 5-20x slower than one
(barrier spinning), and OPQ training with two threads stalled. So searches default to one
thread and training threads are a separate setting.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import faiss

SEARCH_THREADS = int(os.environ.get("FAISS_SEARCH_THREADS", "1"))
TRAIN_THREADS = int(os.environ.get("FAISS_TRAIN_THREADS", "1"))


def use_search_threads(n: int | None = None) -> None:
    """Set the process-wide FAISS thread count for searching (call once per worker process)."""
    faiss.omp_set_num_threads(max(1, n if n is not None else SEARCH_THREADS))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Temporarily use `n` FAISS threads (for training and large adds), then restore."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
