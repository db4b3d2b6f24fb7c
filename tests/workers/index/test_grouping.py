"""Batch grouping by product agrees with the obvious row-by-row definition."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.index.grouping import first_hits


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
