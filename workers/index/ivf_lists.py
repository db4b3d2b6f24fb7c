"""Rewriting an IVF's inverted lists: exact-size storage after a build, new labels after a
compaction drops vectors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

import faiss
import numpy as np

LISTS_PER_LOCK = 32  # lists copied under one read lock when the source is live


def repack_ivf(ivf: faiss.IndexIVF, n_labels: int) -> None:
    """Copy every inverted list (labels below `n_labels`) once into storage of exactly its
    size: lists grown batch by batch keep up to 2x spare capacity, gigabytes at 10M."""
    relabel_ivf(ivf, np.arange(n_labels, dtype=np.int64))


def relabel_ivf(ivf: faiss.IndexIVF, new_of_old: np.ndarray) -> None:
    """Rewrite every inverted list with new labels, dropping entries mapped to -1."""
    fresh, total = relabeled_lists(ivf, new_of_old)
    ivf.replace_invlists(fresh, True)
    fresh.this.disown()
    ivf.ntotal = total


def relabeled_lists(
    ivf: faiss.IndexIVF,
    new_of_old: np.ndarray,
    read: Callable[[], ContextManager[None]] = contextlib.nullcontext,
) -> tuple[faiss.ArrayInvertedLists, int]:
    """New lists holding `ivf`'s entries with new labels (entries mapped to -1 dropped) and
    how many they hold; `ivf` is only read, LISTS_PER_LOCK lists under each `read()`, so
    it may stay live meanwhile (a label added since, past `new_of_old`, is dropped)."""
    invlists = ivf.invlists
    code_size = invlists.code_size
    fresh = faiss.ArrayInvertedLists(ivf.nlist, code_size)
    total = 0
    for first in range(0, ivf.nlist, LISTS_PER_LOCK):
        with read():
            copied = []
            for list_no in range(first, min(first + LISTS_PER_LOCK, ivf.nlist)):
                size = invlists.list_size(list_no)
                if size:
                    old = faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy()
                    codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * code_size)
                    copied.append((list_no, old, codes.copy().reshape(size, code_size)))
        for list_no, old, codes in copied:
            time.sleep(0)  # let searches waiting for the GIL in (else up to 5 ms each)
            inside = old < len(new_of_old)
            new = np.full(len(old), -1, dtype=np.int64)
            new[inside] = new_of_old[old[inside]]
            kept = new >= 0
            n_kept = int(kept.sum())
            if n_kept:
                ids = np.ascontiguousarray(new[kept], dtype=np.int64)
                kept_codes = np.ascontiguousarray(codes[kept])
                fresh.add_entries(list_no, n_kept, faiss.swig_ptr(ids), faiss.swig_ptr(kept_codes))
                total += n_kept
    return fresh, total
