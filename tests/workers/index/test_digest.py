"""Attribute digests: equal exactly when the filter attributes are, the same from a shard's
columns as from database-like rows, and compared against a brute-force reference."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from tests.workers.index.conftest import DIM, random_vectors
from workers.index.digest import ROW_BYTES, Digest, attr_hashes, compare
from workers.index.shard import Shard
from workers.index.types import VectorAttrs


def rows(n: int, seed: int = 0) -> tuple[np.ndarray, VectorAttrs]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64) + 1
    attrs = VectorAttrs.build(
        rng.integers(1, 2**40, n),
        np.where(rng.random(n) < 0.1, -1, rng.integers(1, 500, n)),
        np.round(rng.random(n) * 1000, 2),
        rng.random(n) < 0.5,
    )
    return ids, attrs


def test_each_attribute_changes_the_hash_and_nothing_else_does() -> None:
    base = VectorAttrs.build([7, 7], [3, 3], [9.99, 9.99], [True, True])
    h = attr_hashes(base)
    assert h.dtype == np.uint64
    assert h[0] == h[1]
    changed = [
        VectorAttrs.build([8], [3], [9.99], [True]),
        VectorAttrs.build([7], [-1], [9.99], [True]),
        VectorAttrs.build([7], [3], [10.0], [True]),
        VectorAttrs.build([7], [3], [9.99], [False]),
    ]
    hashes = {int(attr_hashes(a)[0]) for a in changed}
    assert len(hashes) == 4
    assert int(h[0]) not in hashes
    # -0.0 and 0.0 are one price; a float64 price hashes as the float32 the shard stores
    zero = attr_hashes(VectorAttrs.build([1, 1], [1, 1], [0.0, -0.0], [True, True]))
    assert zero[0] == zero[1]
    assert attr_hashes(VectorAttrs.build([1], [1], [np.float64(0.1)], [1]))[0] == attr_hashes(
        VectorAttrs.build([1], [1], [np.float32(0.1)], [True])
    )


def test_no_collisions_among_many_distinct_rows() -> None:
    n = 200_000
    _, attrs = rows(n)
    attrs = VectorAttrs.build(np.arange(n), attrs.category_ids, attrs.prices, attrs.in_stock)
    assert np.unique(attr_hashes(attrs)).size == n


def test_digest_round_trips_through_raw_bytes() -> None:
    ids, attrs = rows(1000)
    digest = Digest.of(ids, attrs)
    assert (np.diff(digest.ids) > 0).all()
    raw = digest.to_bytes()
    assert len(raw) == ROW_BYTES * 1000
    back = Digest.from_bytes(raw)
    np.testing.assert_array_equal(back.ids, digest.ids)
    np.testing.assert_array_equal(back.hashes, digest.hashes)
    assert len(Digest.from_bytes(Digest.empty().to_bytes())) == 0
    with pytest.raises(ValueError, match="16 bytes a row"):
        Digest.from_bytes(raw[:-1])
    with pytest.raises(ValueError, match="twice"):
        Digest.of(np.array([1, 1]), VectorAttrs.build([1, 2], [1, 1], [1, 1], [1, 1]))


def test_compare_matches_a_brute_force_reference() -> None:
    ids, attrs = rows(5000, seed=1)
    rng = np.random.default_rng(2)
    expected = Digest.of(ids, attrs)
    keep = rng.random(len(ids)) > 0.05  # the replica lost 5%
    prices = attrs.prices.copy()
    bumped = rng.random(len(ids)) < 0.03  # and holds old prices for 3%
    prices[bumped] += 1
    ghosts = np.arange(10**6, 10**6 + 40, dtype=np.int64)  # and 40 ids nobody has
    live_ids = np.concatenate([ids[keep], ghosts])
    live_attrs = VectorAttrs.build(
        np.concatenate([attrs.product_ids[keep], ghosts]),
        np.concatenate([attrs.category_ids[keep], np.full(40, -1)]),
        np.concatenate([prices[keep], np.ones(40)]),
        np.concatenate([attrs.in_stock[keep], np.ones(40, dtype=bool)]),
    )
    diff = compare(expected, Digest.of(live_ids, live_attrs))

    np.testing.assert_array_equal(diff.missing, np.sort(ids[~keep]))
    np.testing.assert_array_equal(diff.extra, ghosts)
    np.testing.assert_array_equal(diff.stale, np.sort(ids[keep & bumped]))
    assert not diff.clean
    assert compare(expected, expected).clean


def test_shard_columns_digest_like_database_rows(tmp_path) -> None:
    """The shard narrows its columns (int16 ids, float32 prices); the database has ints and
    Decimals: the two digests still agree, and a changed row shows as stale."""
    shard = Shard(DIM, "clip-test", "Flat", work_dir=tmp_path)
    ids = np.arange(1, 301, dtype=np.int64)
    products = ids // 3 + 1
    prices = [Decimal(f"{(i * 7) % 1000}.{i % 100:02d}") for i in ids.tolist()]
    categories = [None if i % 10 == 0 else int(i % 17) for i in ids.tolist()]
    stock = [bool(i % 4) for i in ids.tolist()]
    shard.upsert(
        ids,
        random_vectors(len(ids)),
        VectorAttrs.build(
            products,
            [-1 if c is None else c for c in categories],
            [float(p) for p in prices],
            stock,
        ),
    )
    shard.delete(ids[:5])
    shard.upsert(  # a later upsert supersedes the first row of id 6
        ids[5:6], random_vectors(1, seed=3), VectorAttrs.build([999], [1], [1.5], [False])
    )

    live_ids, live_attrs = shard.live_rows()
    np.testing.assert_array_equal(live_ids, shard.ids())
    assert live_attrs.prices.dtype == np.float32
    assert len(live_attrs) == len(live_ids)
    from_shard = Digest.of(live_ids, live_attrs)

    # what a database read gives: Decimal prices, None for no category
    db = VectorAttrs.build(
        products[5:], [-1 if c is None else c for c in categories[5:]], prices[5:], stock[5:]
    )
    diff = compare(Digest.of(ids[5:], db), from_shard)
    assert diff.missing.size == 0
    assert diff.extra.size == 0
    assert diff.stale.tolist() == [6]  # the superseding upsert changed its attributes
