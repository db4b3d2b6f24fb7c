"""The compiled single-query steps (workers/index/_hotpath.c) against their Python twins."""

from __future__ import annotations

import shutil
import sysconfig

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.index import native
from workers.index.grouping import top_products_py
from workers.index.types import SearchResult
from workers.index.vectors import unit_rows

try:
    from workers.index import _hotpath as hotpath
except ImportError:  # no C compiler at install: the Python steps run
    hotpath = None

needs_extension = pytest.mark.skipif(hotpath is None, reason="the C extension is not built")

DIM = 16


def test_the_extension_is_built_where_the_install_has_a_compiler_and_used_unless_refused(
    monkeypatch,
) -> None:
    """`pip install` skips the optional extension when it fails to compile; on a machine
    with a C compiler that is a broken build, not a slower one."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler):
        assert hotpath is not None
    monkeypatch.setenv("INDEX_NATIVE", "1")
    assert native._load() is hotpath
    monkeypatch.setenv("INDEX_NATIVE", "0")
    assert native._load() is None


@needs_extension
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(DIM,), (1, DIM)])
@pytest.mark.parametrize("scale", [1.0, 7.5, 1e-30, 1e30])
def test_unit_query_scales_as_unit_rows_does(dtype, shape, scale) -> None:
    q = np.random.default_rng(3).normal(size=DIM) * scale
    q = q.astype(dtype).reshape(shape)
    if not np.isfinite(q).all() or not q.any():
        pytest.skip("out of this dtype's range")
    given_q = q.copy()
    one = hotpath.unit_query(q, DIM)
    assert one.dtype == np.float32
    assert one.shape == (1, DIM)
    assert one.flags.c_contiguous
    np.testing.assert_allclose(one, unit_rows(q.reshape(1, DIM), DIM), rtol=1e-6)
    np.testing.assert_array_equal(q, given_q)  # a copy: the caller's array is left alone


@needs_extension
def test_unit_query_declines_what_the_general_check_must_explain() -> None:
    q = np.ones(DIM, np.float32)
    declined = [
        q.tolist(),  # not an array
        q.astype(np.int64),
        q.astype(">f4"),  # not in this machine's byte order
        np.ones((2, DIM), np.float32),
        np.ones((1, 1, DIM), np.float32),
        np.ones(DIM + 1, np.float32),
        np.ones(2 * DIM, np.float32)[::2],  # strided
        np.zeros(DIM, np.float32),
    ]
    for bad in (np.nan, np.inf, -np.inf):
        broken = q.copy()
        broken[4] = bad
        declined.append(broken)
    for query in declined:
        assert hotpath.unit_query(query, DIM) is None
    with pytest.raises(TypeError):
        hotpath.unit_query(q, 0)


@needs_extension
@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(0, 40),
    k=st.integers(1, 300),
    n_products=st.integers(1, 400),
    missing=st.floats(0, 1),
    column=st.sampled_from([np.int16, np.int32, np.int64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_first_products_agrees_with_the_python_grouping(
    width, k, n_products, missing, column, seed
) -> None:
    """Any row as the shard's searches give it: repeated products, misses (slot -1, score
    -inf) after the hits, narrow columns, k past the row's width (the seen-set then
    outgrows its stack buffer)."""
    rng = np.random.default_rng(seed)
    rows = 500
    products = rng.integers(-5, n_products, size=rows).astype(column)
    images = rng.integers(0, 30_000, size=rows).astype(column)
    hits = width - int(missing * width)
    slots = np.full((1, width), -1, dtype=np.int64)
    slots[0, :hits] = rng.integers(0, rows, size=hits)
    scores = np.full((1, width), -np.inf, dtype=np.float32)
    scores[0, :hits] = np.sort(rng.random(hits, dtype=np.float32))[::-1]
    got, found, valid = _top_products_via_c(scores, slots, products, images, k)
    want, want_found, want_valid = top_products_py(scores, slots, k, products, images, {})
    assert found == want_found
    if found < k:
        assert valid == want_valid
    for name in ("product_ids", "image_ids", "scores"):
        assert getattr(got, name).dtype == getattr(want, name).dtype
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def _top_products_via_c(scores, slots, products, images, k):
    pids, iids, best, found, valid = hotpath.first_products(scores, slots, products, images, k)
    return SearchResult(pids, iids, best, {}), found, valid


@needs_extension
def test_first_products_refuses_slots_past_the_columns_and_other_types() -> None:
    column = np.arange(10, dtype=np.int64)
    scores = np.ones((1, 3), np.float32)
    with pytest.raises(IndexError):
        hotpath.first_products(scores, np.array([[0, 10, 1]]), column, column, 2)
    with pytest.raises(TypeError):
        hotpath.first_products(scores, np.array([[0, 1, 2]], np.int32), column, column, 2)
    with pytest.raises(TypeError):
        hotpath.first_products(scores, np.array([[0, 1, 2]]), column.astype(float), column, 2)
    with pytest.raises(TypeError):
        hotpath.first_products(scores, np.array([[0, 1, 2]]), column, column[:5], 2)
    with pytest.raises(TypeError):
        hotpath.first_products(scores, np.array([[0, 1, 2]]), column, column, 0)
