"""Checking and normalising the vectors a shard is given: rows of the shard's dimension,
finite, scaled to unit length (inner product is then cosine). Queries and upserts come
from outside the process (the update log, the RPC), so nothing is trusted."""

from __future__ import annotations

import math

import numpy as np


def unit_rows(vectors: np.ndarray, dim: int) -> np.ndarray:
    """A float32 C-contiguous copy of (n, dim) `vectors`, each row of unit length (zero
    rows stay zero); ValueError on another shape, NaN or infinity."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {vectors.shape}")
    vectors = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity")
    # norms in float64: float32 squares of very large or small components overflow
    # or vanish, and FAISS's normalize_L2 then turns the vector into zeros
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    np.divide(vectors, norms[:, None], out=vectors, where=norms[:, None] > 0)
    return vectors


def unit_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    """`unit_rows` with a shortcut for one query (most of the traffic): its squared norm is
    finite only if every component is, so one dot product checks and scales it."""
    one = np.array(queries, dtype=np.float32, order="C", ndmin=2)  # a copy of its own
    if one.shape == (1, dim):
        square = float(np.vdot(one, one))
        if 0.0 < square < math.inf:  # else NaN, infinity, overflow or underflow
            one *= 1.0 / math.sqrt(square)
            return one
    return unit_rows(one, dim)
