"""The checks and normalisation every vector and query goes through."""

from __future__ import annotations

import numpy as np
import pytest

from workers.index.vectors import unit_queries, unit_rows

DIM = 16


def test_rows_come_out_unit_length_float32_and_copied() -> None:
    x = np.random.default_rng(0).normal(size=(5, DIM))
    x[1] *= 1e30  # float32 squares would overflow
    x[2] *= 1e-30  # and vanish
    x[3] = 0
    given = x.copy()
    rows = unit_rows(x, DIM)
    assert rows.dtype == np.float32
    assert rows.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(rows[[0, 1, 2, 4]], axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(rows[3], 0)  # no direction: stays zero
    np.testing.assert_array_equal(x, given)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_component_is_refused_by_either_path(bad: float) -> None:
    q = np.ones(DIM, np.float32)
    q[3] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        unit_queries(q, DIM)
    with pytest.raises(ValueError, match="NaN or infinity"):
        unit_rows(np.stack([q, q]), DIM)


@pytest.mark.parametrize("scale", [7.5, 1e-30, 1e25, 1e30])
def test_one_query_takes_the_shortcut_to_the_same_unit_vector(scale: float) -> None:
    q = np.random.default_rng(1).normal(size=DIM).astype(np.float32)
    np.testing.assert_allclose(
        unit_queries(q * scale, DIM)[0], unit_rows(q[None], DIM)[0], rtol=1e-5
    )


def test_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        unit_queries(np.ones(8), DIM)
    with pytest.raises(ValueError, match="shape"):
        unit_rows(np.ones((2, 3, DIM)), DIM)
