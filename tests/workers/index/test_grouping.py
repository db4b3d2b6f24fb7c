"""Batch grouping by product agrees with the obvious row-by-row definition."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.index.grouping import first_hits, padded, place_hits


def reference(products: np.ndarray, valid: np.ndarray, k: int) -> list[list[int]]:
    rows = []
    for pids, ok in zip(products, valid, strict=True):
        seen, columns = set(), []
        for col, (pid, good) in enumerate(zip(pids.tolist(), ok.tolist(), strict=True)):
            if good and pid not in seen and len(columns) < k:
                seen.add(pid)
                columns.append(col)
        rows.append(columns)
    return rows


@settings(max_examples=200, deadline=None)
@given(
    nq=st.integers(1, 5),
    f=st.integers(0, 12),
    k=st.integers(1, 8),
    n_products=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_first_hits_matches_row_by_row(nq, f, k, n_products, seed):
    rng = np.random.default_rng(seed)
    products = rng.integers(0, n_products, size=(nq, f)).astype(np.int64)
    valid = rng.random((nq, f)) < 0.8
    columns, counts = first_hits(products, valid, k)
    expected = reference(products, valid, k)
    assert columns.shape == (nq, k)
    assert counts.tolist() == [len(row) for row in expected]
    for got, want in zip(columns.tolist(), expected, strict=True):
        assert got == want + [-1] * (k - len(want))


@settings(max_examples=200, deadline=None)
@given(
    nq=st.integers(1, 5),
    f=st.integers(0, 12),
    k=st.integers(1, 8),
    n_products=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_place_hits_matches_row_by_row(nq, f, k, n_products, seed):
    """Rows of k distinct products (the shortcut) and rows with repeats (the general
    grouping), mixed in one batch, each get the first k distinct products of their row."""
    rng = np.random.default_rng(seed)
    n_slots = 40
    products = rng.integers(0, n_products, size=n_slots).astype(np.int32)
    image_ids = np.arange(n_slots, dtype=np.int64) * 10
    slots = rng.integers(0, n_slots, size=(nq, f)).astype(np.int64)
    misses = rng.integers(0, f + 1, size=nq)
    for row, n in enumerate(misses):
        slots[row, f - n :] = -1  # FAISS puts misses last
    scores = -np.sort(rng.random((nq, f), dtype=np.float32), axis=1)
    rows_of = rng.permutation(nq + 2)[:nq]
    out = padded(nq + 2, k, {})
    counts = place_hits(out, rows_of, scores, slots, products, image_ids, k)
    expected = reference(products[np.maximum(slots, 0)], slots >= 0, k)
    assert counts.tolist() == [len(row) for row in expected]
    for row, columns in zip(rows_of, expected, strict=True):
        picked = slots[list(rows_of).index(row), columns]
        want_scores = scores[list(rows_of).index(row), columns]
        pad = k - len(columns)
        assert out.product_ids[row].tolist() == products[picked].tolist() + [-1] * pad
        assert out.image_ids[row].tolist() == image_ids[picked].tolist() + [-1] * pad
        assert out.scores[row].tolist() == want_scores.tolist() + [-np.inf] * pad
