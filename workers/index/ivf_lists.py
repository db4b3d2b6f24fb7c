"""Rewriting an IVF's inverted lists: exact-size storage after a build, new labels after a
compaction drops vectors."""

from __future__ import annotations

import faiss
import numpy as np


def repack_ivf(ivf: faiss.IndexIVF, n_labels: int) -> None:
    """Copy every inverted list (labels below `n_labels`) once into storage of exactly its
    size: lists grown batch by batch keep up to 2x spare capacity, gigabytes at 10M."""
    relabel_ivf(ivf, np.arange(n_labels, dtype=np.int64))


def relabel_ivf(ivf: faiss.IndexIVF, new_of_old: np.ndarray) -> None:
    """Rewrite every inverted list with new labels, dropping entries mapped to -1."""
    invlists = ivf.invlists
    code_size = invlists.code_size
    fresh = faiss.ArrayInvertedLists(ivf.nlist, code_size)
    total = 0
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        old = faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy()
        codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * code_size).copy()
        new = new_of_old[old]
        kept = new >= 0
        n_kept = int(kept.sum())
        if n_kept:
            ids = np.ascontiguousarray(new[kept], dtype=np.int64)
            kept_codes = np.ascontiguousarray(codes.reshape(size, code_size)[kept])
            fresh.add_entries(list_no, n_kept, faiss.swig_ptr(ids), faiss.swig_ptr(kept_codes))
            total += n_kept
    ivf.replace_invlists(fresh, True)
    fresh.this.disown()
    ivf.ntotal = total
