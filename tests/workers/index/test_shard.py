"""Shard behaviour against numpy brute force on tiny exact and approximate indexes."""

from __future__ import annotations

import gc
import json
import shutil
import threading
import weakref

import faiss
import numpy as np
import pytest

from tests.workers.index.conftest import DIM, attrs_for, brute_force, random_vectors
from workers.index import snapshot as snap
from workers.index.bulk_build import build_bulk
from workers.index.shard import Shard
from workers.index.spec import SearchParams
from workers.index.synthetic import clustered_vectors, normalise
from workers.index.types import SearchFilter

SPECS = ["Flat", "IVF8,Flat", "HNSW16", "IVF8,PQ4x4", "IVF16_HNSW8,Flat"]
EXACT = SearchParams(nprobe=8, ef_search=512, rerank_k=4000)


def filled(
    spec: str, n: int = 2000, tmp_path=None, compact: bool = True
) -> tuple[Shard, np.ndarray, np.ndarray]:
    shard = Shard(DIM, "clip-test", spec, work_dir=tmp_path)
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    x = random_vectors(n)
    shard.upsert(ids, x, attrs_for(ids))
    if compact:
        shard.compact()
    return shard, ids, x


def test_flat_shard_matches_numpy_brute_force(tmp_path) -> None:
    shard, ids, x = filled("Flat", tmp_path=tmp_path)
    q = random_vectors(25, seed=1)
    result = shard.search(q, 10)
    order = np.argsort(-(q @ x.T), axis=1)[:, :10]
    np.testing.assert_array_equal(result.image_ids, ids[order])
    np.testing.assert_allclose(result.scores, np.take_along_axis(q @ x.T, order, 1), rtol=1e-5)
    np.testing.assert_array_equal(result.product_ids, ids[order])  # one image per product


def test_exact_ivf_drops_deleted_and_superseded_vectors_from_its_lists_at_once(tmp_path) -> None:
    shard, ids, x = filled("IVF8,Flat", tmp_path=tmp_path)
    shard.delete(ids[:20])
    shard.upsert(ids[20:30], random_vectors(10, seed=7), attrs_for(ids[20:30]))
    assert (
        shard.state.backend.ivf.ntotal == len(ids) - 20
    )  # nothing dead left for a selector to skip
    assert not np.isin(shard.search(x[:30], 10, params=EXACT).image_ids, ids[:20]).any()
    shard.snapshot(tmp_path / "snap", "1-0")
    loaded, _ = Shard.load(tmp_path / "snap", work_dir=tmp_path / "loaded")
    loaded.delete(ids[20:25])  # the label map survives the snapshot
    assert loaded.state.backend.ivf.ntotal == len(ids) - 25
    found = loaded.search(x[20:30], 10, params=EXACT).image_ids
    assert not np.isin(found, ids[:25]).any()
    assert loaded.contains(ids[25:]).all()


def test_an_earlier_compressed_snapshot_with_an_exact_delta_loads_into_the_lists(
    tmp_path,
) -> None:
    shard, _, _ = filled("IVF8,PQ4x4", n=3000, tmp_path=tmp_path / "work")
    earlier_bulk = tmp_path / "earlier-bulk.faiss"  # no fresh codes: the earlier layout
    faiss.write_index(shard.state.backend.index, str(earlier_bulk))
    fresh_ids = np.arange(20_000, 20_030, dtype=np.int64)
    fresh = random_vectors(30, seed=51)
    shard.upsert(fresh_ids, fresh, attrs_for(fresh_ids))
    path = shard.snapshot(tmp_path / "snap", "7-0")
    shutil.copyfile(earlier_bulk, path / "bulk.faiss")
    meta = json.loads((path / snap.META).read_text())
    meta["fresh_in_bulk"] = False  # what an earlier version wrote for an exact delta
    meta["files"]["bulk.faiss"] = snap.sha256_file(path / "bulk.faiss")
    (path / snap.META).write_text(json.dumps(meta))
    loaded, position = Shard.load(tmp_path / "snap", work_dir=tmp_path / "loaded")
    assert position == "7-0"
    assert loaded.state.backend.index.ntotal == 3030
    assert loaded.state.backend.rerank.fresh == 30
    found = loaded.search(fresh, 1, params=EXACT)
    np.testing.assert_array_equal(found.image_ids[:, 0], fresh_ids)
    np.testing.assert_allclose(found.scores[:, 0], 1.0, atol=5e-3)


def test_a_graph_folds_its_delta_a_chunk_at_a_time_and_answers_the_same(tmp_path) -> None:
    shard, ids, x = filled("HNSW16", n=1500, tmp_path=tmp_path / "work")
    fresh_ids = np.arange(50_000, 50_150, dtype=np.int64)
    fresh = random_vectors(150, seed=31)
    shard.upsert(fresh_ids, fresh, attrs_for(fresh_ids))
    shard.delete(np.concatenate([ids[:5], fresh_ids[:5]]))  # dead ones fold too, masked
    shard.upsert(ids[5:10], random_vectors(5, seed=32), attrs_for(ids[5:10]))  # superseded
    queries = np.vstack([fresh, x[:10], random_vectors(20, seed=33)])
    before = shard.search(queries, 10, params=EXACT)
    assert shard.delta_size == 155
    assert shard.fold_delta(64) == 64
    assert shard.delta_size == 91
    half = shard.search(queries, 10, params=EXACT)  # bulk and delta both hold fresh slots
    while shard.fold_delta(64):
        pass
    assert shard.delta_size == 0
    assert (
        shard.state.backend.index.ntotal == shard.stats()["slots"] == 1655
    )  # positional: label == slot
    after = shard.search(queries, 10, params=EXACT)
    for got in (half, after):  # a graph search, even this wide, is not exact: near-equal
        pairs = zip(got.image_ids, before.image_ids, strict=True)
        same = [len(set(a) & set(b)) for a, b in pairs]
        assert sum(same) >= 0.99 * before.image_ids.size
    assert not np.isin(after.image_ids, np.concatenate([ids[:5], fresh_ids[:5]])).any()
    np.testing.assert_array_equal(after.image_ids[5:150, 0], fresh_ids[5:])  # each finds itself
    shard.snapshot(tmp_path / "snap", "9-0")
    loaded, _ = Shard.load(tmp_path / "snap", work_dir=tmp_path / "loaded")
    np.testing.assert_array_equal(
        loaded.search(queries, 10, params=EXACT).image_ids, after.image_ids
    )
    other, _, _ = filled("IVF8,Flat", n=600, tmp_path=tmp_path / "ivf")
    other.upsert(fresh_ids, fresh, attrs_for(fresh_ids))
    assert other.fold_delta() == 0  # other kinds' fresh vectors are in their bulk already


@pytest.mark.parametrize("spec", SPECS)
def test_deleted_and_superseded_ids_never_returned(spec: str, tmp_path) -> None:
    shard, ids, x = filled(spec, tmp_path=tmp_path)
    q = x[:40]  # queries equal to stored vectors: each one's own id would rank first
    shard.delete(ids[:20])
    moved = random_vectors(20, seed=7)
    shard.upsert(ids[20:40], moved, attrs_for(ids[20:40]))  # supersede with other vectors
    for _ in range(2):  # before and after folding the delta and dropping removed vectors
        result = shard.search(q, 10, params=EXACT)
        assert not np.isin(result.image_ids, ids[:20]).any()
        # a superseded id may come back only through its new vector's score
        for row in range(20, 40):
            hit = result.image_ids[row] == ids[row]
            if hit.any():
                assert result.scores[row][hit][0] < 0.999
        shard.compact()
    assert not shard.contains(ids[:20]).any()
    assert shard.contains(ids[20:]).all()
    assert shard.stats()["removed"] == 0 or spec.startswith("HNSW")


@pytest.mark.parametrize("spec", SPECS)
def test_filter_matching_one_percent_still_returns_k(spec: str, tmp_path) -> None:
    shard, _, _ = filled(spec, n=3000, tmp_path=tmp_path)
    flt = SearchFilter(category_ids=frozenset({42}))  # ids % 100 == 42: 30 of 3000
    result = shard.search(random_vectors(8, seed=3), 10, flt)
    assert (result.image_ids >= 0).all()
    assert (result.image_ids % 100 == 42).all()
    both = SearchFilter(category_ids=frozenset({42, 43}), min_price=10, max_price=30, in_stock=True)
    result = shard.search(random_vectors(4, seed=4), 5, both)
    attrs = shard.attrs_of(result.image_ids[result.image_ids >= 0])
    assert np.isin(attrs.category_ids, [42, 43]).all()
    assert ((attrs.prices >= 10) & (attrs.prices <= 30) & attrs.in_stock).all()


def churned(spec: str, tmp_path) -> tuple[Shard, dict[int, np.ndarray], set[int]]:
    """3000 vectors, then fresh ones of category 1 (in the delta of a graph), superseded
    and deleted ones of category 1; the live vectors by id, for brute force, and the ids
    upserted last."""
    shard, ids, x = filled(spec, n=3000, tmp_path=tmp_path)
    fresh_ids = np.arange(100_001, 100_601, 100, dtype=np.int64)  # category 1
    fresh = random_vectors(len(fresh_ids), seed=61)
    shard.upsert(fresh_ids, fresh, attrs_for(fresh_ids))
    replaced = ids[ids % 100 == 1][:3]  # superseded: their new vectors are fresh too
    new_rows = random_vectors(3, seed=62)
    shard.upsert(replaced, new_rows, attrs_for(replaced))
    shard.delete(ids[ids % 100 == 1][3:6])
    vectors = dict(zip(ids.tolist(), x, strict=True))
    vectors.update(zip(fresh_ids.tolist(), fresh, strict=True))
    vectors.update(zip(replaced.tolist(), new_rows, strict=True))
    for gone in ids[ids % 100 == 1][3:6].tolist():
        del vectors[gone]
    return shard, vectors, {*fresh_ids.tolist(), *replaced.tolist()}


def assert_exact_filtered(shard: Shard, vectors: dict, categories: set[int]) -> None:
    """Batch and single searches through the filter equal brute force on its matches."""
    allowed = {i for i in vectors if i % 100 in categories and i % 3 != 0}  # in stock
    flt = SearchFilter(category_ids=frozenset(categories), in_stock=True)
    q = random_vectors(6, seed=63)
    expect = brute_force(vectors, {i: i for i in vectors}, q, 10, allowed)
    batch = shard.search(q, 10, flt)
    singles = [shard.search(row, 10, flt) for row in q]
    for row, exp in enumerate(expect):
        want = [i for i, _ in exp]
        assert len(want) == 10
        assert batch.image_ids[row].tolist() == want
        assert singles[row].image_ids[0].tolist() == want


@pytest.mark.parametrize("spec", ["HNSW16", "HNSW16_SQ8"])
def test_a_selective_filter_on_a_graph_scans_its_rows_and_finds_the_exact_matches(
    spec: str, tmp_path
) -> None:
    """A graph walks on until it holds efSearch matches, slowly and still missing some when
    a filter keeps few; the shard scores those few from the graph's rows instead (the
    re-rank rows of a compressed graph), fresh, deleted and superseded vectors included."""
    shard, vectors, _ = churned(spec, tmp_path)
    categories = set(range(1, 8))  # ~7%: more than a gather of rows pays for
    assert shard.state.selection(SearchFilter(category_ids=frozenset(categories))).slots is None
    faiss.cvar.hnsw_stats.reset()
    assert_exact_filtered(shard, vectors, categories)
    assert faiss.cvar.hnsw_stats.ndis == 0  # the graph was not walked
    broad = SearchFilter(in_stock=True)  # two thirds match: the graph is cheaper
    q = random_vectors(6, seed=63)
    assert (shard.search(q, 10, broad).image_ids >= 0).all()
    assert faiss.cvar.hnsw_stats.ndis > 0


@pytest.mark.parametrize(
    "spec", ["Flat", "IVF8,Flat", "IVF16_HNSW8,Flat", "IVF8,PQ4x4", "HNSW16", "HNSW16_SQ8"]
)
def test_a_rare_filter_scores_its_matches_alone_and_finds_the_exact_ones(
    spec: str, tmp_path
) -> None:
    """When few vectors match, the shard gathers their rows (flat storage, IVF lists through
    the label map, or re-rank rows) and scores them alone: no list probed, no graph walked,
    no row of the rest tested; fresh, deleted and superseded vectors included."""
    shard, vectors, fresh = churned(spec, tmp_path)
    gathered: list[int] = []
    backend = shard.state.backend
    score_subset = backend.score_subset

    def counted(queries, fetch, bits, slots):
        gathered.append(int(np.count_nonzero(slots < backend.n_bulk)))  # rows gathered
        return score_subset(queries, fetch, bits, slots)

    backend.score_subset = counted
    faiss.cvar.hnsw_stats.reset()
    faiss.cvar.indexIVF_stats.reset()
    assert_exact_filtered(shard, vectors, {1})
    assert faiss.cvar.hnsw_stats.ndis == 0
    assert faiss.cvar.indexIVF_stats.nq == 0
    matches = {i for i in vectors if i % 100 == 1 and i % 3 != 0}
    graph = getattr(shard.state.backend, "scan_index", None) is not None
    in_delta = matches & fresh if graph else set()  # scanned there
    assert gathered == [len(matches - in_delta)] * 7  # a batch of 6 queries, then each alone


def test_a_request_for_more_than_the_tuned_k_probes_deeper(tmp_path) -> None:
    """k=50 on a shard tuned for k=10 probes as deep as the tuner found depth 50 needs,
    and reaches the recall target there, which the k=10 setting does not."""
    x = clustered_vectors(6000, 64, n_clusters=30)
    ids = np.arange(6000, dtype=np.int64)
    batches = iter([(ids, x, attrs_for(ids))])
    shard = build_bulk(batches, 64, "clip-test", "IVF64,Flat", work_dir=tmp_path).shard
    assert shard.scaled_params(shard.params, 50).nprobe > shard.params.nprobe
    q = clustered_vectors(100, 64, n_clusters=30, seed=72)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :50]

    def recall(found: np.ndarray) -> float:
        return np.mean([np.intersect1d(f, t).size / 50 for f, t in zip(found, truth, strict=True)])

    deep = recall(shard.search(q, 50).image_ids)  # one image per product: ids compare
    as_tuned = recall(shard.search_images(q, 50)[1])  # the k=10 setting, unscaled
    assert deep >= 0.95 > as_tuned


def test_filtered_results_equal_brute_force_on_the_matching_subset(tmp_path) -> None:
    shard, ids, x = filled("Flat", tmp_path=tmp_path)
    flt = SearchFilter(min_price=5, max_price=9, category_ids=frozenset(range(0, 100, 2)))
    a = attrs_for(ids)
    keep = (a.prices >= 5) & (a.prices <= 9) & (a.category_ids % 2 == 0)
    q = random_vectors(5, seed=9)
    expect = brute_force(
        dict(zip(ids[keep].tolist(), x[keep], strict=True)),
        dict(zip(ids.tolist(), a.product_ids.tolist(), strict=True)),
        q,
        7,
    )
    assert all(len(exp) == 7 for exp in expect)
    result = shard.search(q, 7, flt)
    for row, exp in enumerate(expect):
        assert result.product_ids[row].tolist() == [p for p, _ in exp]


def test_results_grouped_by_product_with_best_image(tmp_path) -> None:
    shard = Shard(DIM, "clip-test", "Flat", work_dir=tmp_path)
    ids = np.arange(600, dtype=np.int64)
    x = random_vectors(600, seed=5)
    attrs = attrs_for(ids, images_per_product=6)  # 100 products x 6 images
    shard.upsert(ids, x, attrs)
    q = random_vectors(6, seed=6)
    result = shard.search(q, 12)
    expect = brute_force(
        dict(zip(ids.tolist(), x, strict=True)),
        dict(zip(ids.tolist(), attrs.product_ids.tolist(), strict=True)),
        q,
        12,
    )
    for row, exp in enumerate(expect):
        assert len(set(result.product_ids[row].tolist())) == 12
        assert result.product_ids[row].tolist() == [p for p, _ in exp]
        np.testing.assert_allclose(result.scores[row], [s for _, s in exp], rtol=1e-5)
        assert (result.image_ids[row] // 6 == result.product_ids[row]).all()


@pytest.mark.parametrize("images_per_product", [1, 3])
@pytest.mark.parametrize("spec", ["Flat", "IVF8,Flat", "IVF8,PQ4x4", "HNSW16"])
def test_a_single_query_gets_its_row_of_the_batch_answer(
    spec: str, images_per_product: int, tmp_path
) -> None:
    """Single queries take their own path (with a shortcut when the k best images are of k
    products); they must answer exactly as the batch path does, filtered or not."""
    shard = Shard(DIM, "clip-test", spec, work_dir=tmp_path)
    ids = np.arange(1500, dtype=np.int64)
    shard.upsert(ids, random_vectors(1500, seed=8), attrs_for(ids, images_per_product))
    shard.compact()
    shard.upsert(ids[:40], random_vectors(40, seed=9), attrs_for(ids[:40], images_per_product))
    shard.delete(ids[100:140])
    q = random_vectors(12, seed=10)
    rare = SearchFilter(category_ids=frozenset({7}), in_stock=True)  # ~10 images match
    for flt in (None, rare):
        batch = shard.search(q, 10, flt, params=EXACT)
        for row in range(len(q)):
            one = shard.search(q[row], 10, flt, params=EXACT)
            assert one.product_ids.dtype == one.image_ids.dtype == np.int64
            assert one.scores.dtype == np.float32
            assert one.scores.shape == (1, 10)
            np.testing.assert_array_equal(one.product_ids[0], batch.product_ids[row])
            np.testing.assert_array_equal(one.image_ids[0], batch.image_ids[row])
            np.testing.assert_allclose(one.scores[0], batch.scores[row], rtol=1e-5)


PLAIN_STATES = [
    ("Flat", True, True),
    ("IVF8,Flat", True, True),
    ("IVF16_HNSW8,Flat", True, True),
    ("IVF8,PQ4x4", True, True),  # fresh codes in the lists, removed ones through a bitmap
    ("HNSW16", False, False),  # fresh vectors in a delta beside the graph
    ("HNSW16", True, True),  # folded into the graph, removed ones through a bitmap
    ("IVF8,Flat", False, False),  # untrained: everything in the delta
]


@pytest.mark.parametrize("images_per_product", [1, 3])
@pytest.mark.parametrize(("spec", "folded", "planned"), PLAIN_STATES)
def test_an_unfiltered_single_query_answers_as_the_general_path(
    spec: str, folded: bool, planned: bool, images_per_product: int, tmp_path
) -> None:
    """An unfiltered single query at the shard's own knobs runs a plan made once per
    version (one FAISS call where one suffices); it must answer as the general path does
    with the same knobs, and follow every write and change of knobs."""
    shard = Shard(DIM, "clip-test", spec, work_dir=tmp_path)
    ids = np.arange(1500, dtype=np.int64)
    # a product's images lie close together, so a query's 2k best hits often hold fewer
    # than k products and the search goes on past the plan's one call
    centres = random_vectors(2100 // images_per_product, seed=8)

    def images_of(image_ids: np.ndarray, seed: int) -> np.ndarray:
        noise = random_vectors(len(image_ids), seed=seed)
        return normalise(centres[image_ids // images_per_product] + 0.3 * noise)

    shard.upsert(ids, images_of(ids, 9), attrs_for(ids, images_per_product))
    if folded or spec != "IVF8,Flat":
        shard.compact()
    fresh = np.arange(2000, 2040, dtype=np.int64)
    shard.upsert(fresh, images_of(fresh, 10), attrs_for(fresh, images_per_product))
    shard.upsert(ids[:20], images_of(ids[:20], 11), attrs_for(ids[:20], images_per_product))
    shard.delete(ids[90:150])
    if folded and spec.startswith("HNSW"):
        while shard.fold_delta():
            pass
    q = random_vectors(8, seed=10)

    def assert_same(k: int) -> None:
        for row in range(len(q)):
            plain = shard.search(q[row], k)
            general = shard.search(q[row], k, params=shard.params)
            np.testing.assert_array_equal(plain.product_ids, general.product_ids)
            np.testing.assert_array_equal(plain.image_ids, general.image_ids)
            np.testing.assert_array_equal(plain.scores, general.scores)
            assert plain.meta == general.meta
            assert not np.isin(plain.image_ids, ids[90:150]).any()
            empty = shard.search(q[row], k, SearchFilter())  # what the RPC server passes
            np.testing.assert_array_equal(empty.image_ids, plain.image_ids)

    for k in (1, 10, 25):  # 25: past the tuned k, scaled as the general path scales it
        assert_same(k)
    hits = shard.search(q[0], 10).image_ids[0]
    shard.delete(hits[:2])  # a new version: the plan made before it must not answer
    assert not np.isin(shard.search(q[0], 10).image_ids, hits[:2]).any()
    assert_same(10)
    shard.upsert(fresh[:1], q[:1], attrs_for(fresh[:1], images_per_product))
    assert shard.search(q[0], 1).image_ids[0, 0] == fresh[0]
    if shard.params.nprobe is not None:
        shard.params = SearchParams(nprobe=1, rerank_k=shard.params.rerank_k)  # new knobs
        assert_same(10)


def test_a_swap_lets_go_of_the_index_it_replaces(tmp_path) -> None:
    """Nothing of a replaced state (a cache, a search's parameters) keeps its index alive:
    an idle shard would hold two."""
    shard, _, x = filled("IVF8,Flat", tmp_path=tmp_path / "a")
    rebuilt, _, _ = filled("IVF8,Flat", tmp_path=tmp_path / "b")
    shard.search(x[0], 10)
    replaced = weakref.ref(shard.state.backend.index)
    shard.swap_bulk(rebuilt)
    del rebuilt
    gc.collect()
    assert replaced() is None


def test_a_flat_bulk_tombstones_removed_vectors_and_searches_without_a_selector(
    tmp_path,
) -> None:
    shard, ids, x = filled("Flat", n=1200, tmp_path=tmp_path)
    shard.delete(ids[:50])
    shard.upsert(ids[50:60], random_vectors(10, seed=41), attrs_for(ids[50:60]))
    assert shard.state.selection(None) == (None, 1150, None)  # no bitmap to test in the scan
    assert np.isnan(shard.state.backend.index.reconstruct(0)).all()  # the row of a deleted vector
    live_ids = np.concatenate([ids[60:], ids[50:60]])
    live_x = np.vstack([x[60:], shard.state.backend.index.reconstruct_n(1200, 10)])
    queries = np.vstack([x[:60], random_vectors(20, seed=42)])  # 80: FAISS's BLAS path
    expected = live_ids[np.argsort(-(queries @ live_x.T), axis=1, kind="stable")[:, :10]]
    batch = shard.search(queries, 10)
    np.testing.assert_array_equal(batch.image_ids, expected)
    for row in (0, 55, 79):  # one query at a time: the scan path
        np.testing.assert_array_equal(shard.search(queries[row], 10).image_ids[0], expected[row])
    # a snapshot whose dead rows are still vectors (earlier versions) is tombstoned on load
    rows = faiss.rev_swig_ptr(shard.state.backend.index.get_xb(), 1210 * DIM).reshape(1210, DIM)
    rows[0] = x[0]  # deleted, but its row as an earlier version left it
    shard.snapshot(tmp_path / "snap", "3-0")
    loaded, _ = Shard.load(tmp_path / "snap", work_dir=tmp_path / "loaded")
    assert np.isnan(loaded.state.backend.index.reconstruct(0)).all()
    np.testing.assert_array_equal(loaded.search(queries, 10).image_ids, expected)
    loaded.compact()  # drops the tombstones
    assert loaded.state.backend.index.ntotal == 1150
    np.testing.assert_array_equal(loaded.search(queries, 10).image_ids, expected)


@pytest.mark.parametrize("spec", ["IVF8,PQ4x4", "HNSW16"])
def test_a_shard_with_nothing_removed_searches_without_a_selector(spec: str, tmp_path) -> None:
    shard, ids, x = filled(spec, tmp_path=tmp_path)
    assert shard.state.selection(None) == (None, len(ids), None)
    before = shard.search(x[:5], 10, params=EXACT)
    shard.delete(ids[:1])  # now the removed vector must be masked out inside the search
    bits, n_match, _ = shard.state.selection(None)
    assert bits is not None
    assert n_match == len(ids) - 1
    after = shard.search(x[:5], 10, params=EXACT)
    assert ids[0] in before.image_ids[0]
    assert ids[0] not in after.image_ids
    np.testing.assert_array_equal(after.image_ids[1:], before.image_ids[1:])


def test_wrong_model_or_dimension_refused(tmp_path) -> None:
    shard = Shard(DIM, "clip-test", "Flat", work_dir=tmp_path)
    ids = np.arange(3, dtype=np.int64)
    with pytest.raises(ValueError, match=r"dim|shape"):
        shard.upsert(ids, random_vectors(3, dim=DIM + 1), attrs_for(ids))
    with pytest.raises(ValueError, match="model"):
        shard.upsert(ids, random_vectors(3), attrs_for(ids), model="other-model")
    with pytest.raises(ValueError, match="shape"):
        shard.search(random_vectors(1, dim=8), 3)


def test_a_single_query_is_checked_and_normalised_as_a_batch_row_is(tmp_path) -> None:
    """One query takes a shortcut through the checks (one dot product); any query must
    come out as the same unit vector, and a non-finite one must be refused, either way."""
    shard, _, _ = filled("Flat", n=300, tmp_path=tmp_path)
    q = random_vectors(1, seed=3)[0]
    for scaled in (q * 7.5, q * 1e-30, q * 1e25, (q * 3).astype(np.float64), [q.tolist()]):
        one = shard.search(scaled, 5)
        row = shard.search(np.stack([np.asarray(scaled).reshape(-1), q]), 5)
        np.testing.assert_array_equal(one.image_ids[0], row.image_ids[0])
        np.testing.assert_allclose(one.scores[0], row.scores[0], rtol=1e-5)
        np.testing.assert_allclose(one.scores[0], shard.search(q, 5).scores[0], rtol=1e-5)
    zero = shard.search(np.zeros(DIM, np.float32), 3)  # no direction: every score 0
    np.testing.assert_array_equal(zero.scores, 0)
    for bad in (np.nan, np.inf, -np.inf):
        broken = q.copy()
        broken[5] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            shard.search(broken, 3)
        with pytest.raises(ValueError, match="NaN or infinity"):
            shard.search(np.stack([q, broken]), 3)
    unchanged = q.copy()
    shard.search(unchanged, 3)
    np.testing.assert_array_equal(unchanged, q)  # the caller's array is not normalised


@pytest.mark.parametrize("spec", ["IVF8,Flat", "IVF8,PQ4x4"])
def test_an_untrained_shard_swapped_to_a_trained_one_searches_its_bulk(spec, tmp_path) -> None:
    """A new shard waits untrained (fresh vectors exact in its delta) until a build is
    swapped in; from then on its searches must go through the built bulk."""
    live = Shard(DIM, "clip-test", spec, work_dir=tmp_path / "live")
    few = np.arange(10_000, 10_005, dtype=np.int64)
    live.upsert(few, random_vectors(5, seed=4), attrs_for(few))
    live.compact()  # too few vectors to train: they stay in the delta
    assert not live.state.backend.index.is_trained
    built, ids, x = filled(spec, tmp_path=tmp_path / "built")
    expected = built.search(x[:20], 5, params=EXACT)
    live.swap_bulk(built)
    found = live.search(x[:20], 5, params=EXACT)
    np.testing.assert_array_equal(found.image_ids, expected.image_ids)
    np.testing.assert_array_equal(found.image_ids[:, 0], ids[:20])


def test_compressed_shard_reranks_exactly(tmp_path) -> None:
    shard, ids, x = filled("IVF8,PQ4x4", n=3000, tmp_path=tmp_path)
    q = random_vectors(30, seed=11)
    truth = ids[np.argsort(-(q @ x.T), axis=1)[:, :10]]
    with_rerank = shard.search(q, 10, params=SearchParams(nprobe=8, rerank_k=1000))
    bare = shard.search(q, 10, params=SearchParams(nprobe=8, rerank_k=10))

    def recall(found: np.ndarray) -> float:
        return float(
            np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        )

    assert recall(with_rerank.image_ids) > recall(bare.image_ids)
    assert recall(with_rerank.image_ids) >= 0.95
    # exact scores from the bfloat16 rows (8-bit mantissa: ~1e-3 at 16 dims), not PQ estimates
    np.testing.assert_allclose(with_rerank.scores[:, 0], np.max(q @ x.T, axis=1), rtol=5e-3)


def test_concurrent_searches_during_updates_never_error(tmp_path) -> None:
    shard, ids, _ = filled("IVF8,Flat", n=2000, tmp_path=tmp_path)
    errors: list[BaseException] = []
    stop = threading.Event()
    q = random_vectors(4, seed=12)
    churned, doomed = ids[:1000], list(ids[1000:1300])  # doomed ones are deleted for good
    gone: list[int] = []  # deleted before the search that checks them began

    def reader() -> None:
        try:
            while not stop.is_set():
                result = shard.search(q, 10, params=EXACT)
                # never a half-applied update: always k distinct live products
                assert (result.image_ids >= 0).all()
                assert len(set(result.product_ids[0].tolist())) == 10
        except BaseException as exc:
            errors.append(exc)

    def single_reader(seed: int) -> None:
        """Unfiltered single queries at the shard's own knobs (their plans made per version
        and k, by several threads at once; past 128 values of k they are cleared)."""
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                k = int(rng.integers(1, 200))
                deleted = set(gone)
                result = shard.search(q[int(rng.integers(4))], k)
                found = result.image_ids[0]
                assert (found >= 0).all()
                assert len(set(result.product_ids[0].tolist())) == k
                assert not deleted.intersection(found.tolist())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    threads += [threading.Thread(target=single_reader, args=(seed,)) for seed in range(2)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(0)
    for round_no in range(30):
        batch = rng.choice(churned, 50, replace=False)
        shard.upsert(batch, random_vectors(50, seed=100 + round_no), attrs_for(batch))
        shard.delete(rng.choice(churned, 10, replace=False))
        victims = [doomed.pop() for _ in range(10)]
        shard.delete(np.array(victims, dtype=np.int64))
        gone.extend(victims)
        if round_no % 10 == 9:
            shard.compact()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_ids_and_stats(tmp_path) -> None:
    shard, ids, _ = filled("IVF8,Flat", n=500, tmp_path=tmp_path)
    shard.delete(ids[:5])
    shard.upsert(ids[5:7], random_vectors(2, seed=2), attrs_for(ids[5:7]))
    np.testing.assert_array_equal(shard.ids(), np.sort(ids[5:]))
    stats = shard.stats()
    assert stats["vectors"] == 495
    assert stats["delta_size"] == 0  # an IVF-Flat bulk takes fresh vectors into its lists
    assert stats["bulk_size"] == stats["slots"] == 502
    assert stats["removed"] == 7
    assert stats["spec"] == "IVF8,Flat"
    assert stats["model"] == "clip-test"


def test_rerank_rows_round_trip_as_bfloat16_and_old_segment_snapshots_convert(tmp_path) -> None:
    from workers.index.rerank import BFLOAT16, FLOAT16, RerankStore, to_bfloat16

    x = random_vectors(50, dim=512, seed=5)
    store = RerankStore.written(tmp_path / "new", 512, [x[:20], to_bfloat16(x[20:])])
    assert store.size == 50
    assert store.disk_bytes == 50 * 512 * 2
    back = store.gather(np.arange(50))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, atol=2**-8 * np.abs(x).max())
    assert (to_bfloat16(np.array([1.0, -2.5], np.float32)) == [0x3F80, 0xC020]).all()
    # the file is a plain FAISS index, memory-mapped rather than read into RAM
    assert not faiss.downcast_index(store.index).codes.is_owned
    np.testing.assert_array_equal(faiss.read_index(str(store.path)).reconstruct_n(0, 50), back)
    # an earlier version's snapshot (raw float16 and bfloat16 segments) converts on load
    x.astype(np.float16)[:30].tofile(tmp_path / "a.f16")
    to_bfloat16(x[30:]).tofile(tmp_path / "b.f16")
    legacy = [
        {"file": "a.f16", "start": 0, "rows": 30, "sha256": "-", "encoding": FLOAT16},
        {"file": "b.f16", "start": 30, "rows": 20, "sha256": "-", "encoding": BFLOAT16},
    ]
    converted = RerankStore.from_description(tmp_path, legacy, 512, tmp_path / "work")
    np.testing.assert_allclose(converted.gather(np.arange(50)), x, atol=2**-7 * np.abs(x).max())
    with pytest.raises(ValueError, match="must be"):  # a bad block leaves no half file
        RerankStore.written(tmp_path / "bad", 512, [x[:5], x[:5, :64]])
    assert not list((tmp_path / "bad").iterdir())
    with pytest.raises(ValueError, match="unknown re-rank store"):
        RerankStore.from_description(tmp_path, {"file": "a.f16", "format": "?"}, 512, tmp_path)


def test_rerank_inside_faiss_scores_the_rows_of_each_candidate(tmp_path) -> None:
    from workers.index.rerank import RerankStore

    x = random_vectors(300, dim=64, seed=6)
    store = RerankStore.written(tmp_path, 64, [x[:120], x[120:]])
    kept = store.rewritten(np.arange(0, 300, 2), random_vectors(7, dim=64, seed=8))
    assert kept.size == 157
    assert kept.path != store.path
    np.testing.assert_array_equal(kept.gather(np.arange(150)), store.gather(np.arange(0, 300, 2)))
    rows = kept.gather(np.arange(kept.size))
    base = faiss.IndexHNSWFlat(64, 8, faiss.METRIC_INNER_PRODUCT)  # labels are positions
    base.add(rows + 0.05 * random_vectors(kept.size, dim=64, seed=9))  # a rough ranking
    queries = random_vectors(4, dim=64, seed=7)
    params = faiss.IndexRefineSearchParameters(k_factor=10)
    scores, labels = kept.refined(base).search(queries, 5, params=params)
    assert (labels >= 0).all()
    exact = np.einsum("qcd,qd->qc", rows[labels], queries)
    np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()  # re-sorted by the exact scores


def test_fresh_rows_follow_the_file_in_ram_and_are_refined_without_touching_it(tmp_path) -> None:
    from workers.index.rerank import RerankStore, to_bfloat16

    x = random_vectors(3000, dim=32, seed=11)
    store = RerankStore.written(tmp_path, 32, [x[:100]])
    on_disk = store.path.read_bytes()
    base = faiss.IndexFlatIP(32)  # labels are positions: slots
    base.add(x[:100])
    params = faiss.IndexRefineSearchParameters(k_factor=4)
    assert store.append(to_bfloat16(x[100:110]))  # the first rows make room: a new mapping
    refine = store.refined(base)
    base.add(x[100:110])
    assert store.fresh == 10
    scores, labels = refine.search(x[100:110], 1, params=params)
    np.testing.assert_array_equal(labels[:, 0], np.arange(100, 110))  # fresh rows re-scored
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=5e-3)
    # the room doubles as rows come; the rows move and indexes made before must be remade
    moved = [store.append(to_bfloat16(x[i : i + 300])) for i in range(110, 3000, 300)]
    base.add(x[110:3000])
    assert any(moved)
    assert not all(moved)
    np.testing.assert_array_equal(store.fresh_rows, to_bfloat16(x[100:3000]))  # moved whole
    scores, labels = store.refined(base).search(x[[5, 2999]], 1, params=params)
    np.testing.assert_array_equal(labels[:, 0], [5, 2999])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=5e-3)
    # the file (hard-linked by snapshots) never saw a byte of it
    assert store.path.read_bytes() == on_disk
    assert RerankStore(store.path, 32).size == 100


@pytest.mark.parametrize("spec", ["IVF8,PQ4x4", "OPQ4,IVF8,PQ4x4"])
def test_compressed_delta_is_found_and_survives_a_snapshot(tmp_path, spec) -> None:
    # fresh codes join the bulk's lists, their rows follow the re-rank file's in RAM
    shard, _, _ = filled(spec, n=3000, tmp_path=tmp_path / "work")
    fresh_ids = np.arange(10_000, 10_050, dtype=np.int64)
    fresh = random_vectors(50, seed=21)
    shard.upsert(fresh_ids[:10], fresh[:10], attrs_for(fresh_ids[:10]))
    shard.upsert(fresh_ids[10:], fresh[10:], attrs_for(fresh_ids[10:]))
    assert shard.delta_size == 50  # rows kept as bfloat16
    assert shard.stats()["fresh_in_bulk"]
    assert shard.state.backend.rerank.fresh == 50
    assert shard.state.backend.index.ntotal == 3050
    found = shard.search(fresh, 1, params=EXACT)
    np.testing.assert_array_equal(found.image_ids[:, 0], fresh_ids)  # exact scores: itself
    np.testing.assert_allclose(found.scores[:, 0], 1.0, atol=5e-3)
    shard.delete(fresh_ids[:3])
    gone = shard.search(fresh[:3], 5, params=EXACT).image_ids
    assert not set(gone.ravel()) & set(fresh_ids[:3])
    shard.upsert(fresh_ids[:3], fresh[:3], attrs_for(fresh_ids[:3]))
    shard.snapshot(tmp_path / "snap", "5-0")
    loaded, position = Shard.load(tmp_path / "snap", work_dir=tmp_path / "loaded")
    assert position == "5-0"
    assert loaded.delta_size == 53  # the 3 re-upserted took new slots
    assert loaded.stats()["fresh_in_bulk"] == shard.stats()["fresh_in_bulk"]
    assert (
        loaded.state.backend.index.ntotal == shard.state.backend.index.ntotal
    )  # fresh codes are not added twice
    again = loaded.search(fresh, 5, params=EXACT)
    np.testing.assert_array_equal(again.image_ids, shard.search(fresh, 5, params=EXACT).image_ids)
    loaded.compact()  # the delta folds into the bulk and its rows into the re-rank file
    assert loaded.delta_size == 0
    assert loaded.state.backend.rerank.fresh == 0
    assert loaded.state.backend.rerank.size == 3050  # 3 dead dropped
    folded = loaded.search(fresh, 1, params=EXACT)
    np.testing.assert_array_equal(folded.image_ids[:, 0], fresh_ids)
    # the loaded store was replaced by the compacted one: one re-rank file in the work dir
    assert len(list((tmp_path / "loaded").glob("rerank-*"))) == 1
    loaded.delete(fresh_ids[:10])
    loaded.compact()  # drops the deleted rows: a new file again, the old one removed
    assert [p.name for p in (tmp_path / "loaded").glob("rerank-*")] == [
        loaded.state.backend.rerank.path.name
    ]
    assert loaded.state.backend.rerank.size == loaded.stats()["slots"] == 3040
    assert not set(loaded.search(fresh, 5, params=EXACT).image_ids.ravel()) & set(fresh_ids[:10])


def test_replicas_loading_one_snapshot_into_one_work_dir_keep_their_own_rerank_files(
    tmp_path,
) -> None:
    shard, ids, x = filled("IVF8,PQ4x4", n=3000, tmp_path=tmp_path / "work")
    shard.snapshot(tmp_path / "snap", "1-0")
    one, _ = Shard.load(tmp_path / "snap", work_dir=tmp_path / "shared")
    two, _ = Shard.load(tmp_path / "snap", work_dir=tmp_path / "shared")
    assert one.state.backend.rerank.path != two.state.backend.rerank.path
    one.delete(ids[:5])
    one.compact()  # replaces (and removes) its own link only
    two.snapshot(tmp_path / "snap", "2-0")  # still links its file
    again, position = Shard.load(tmp_path / "snap", work_dir=tmp_path / "again")
    assert position == "2-0"
    q = x[:3]
    np.testing.assert_array_equal(
        again.search(q, 5, params=EXACT).image_ids, two.search(q, 5, params=EXACT).image_ids
    )


@pytest.mark.parametrize("spec", ["Flat", "HNSW16"])
def test_memory_of_flat_and_graph_bulks_is_counted_without_serialising(tmp_path, spec) -> None:
    shard, _, _ = filled(spec, n=1000, tmp_path=tmp_path)
    shard.compact()
    index_bytes = faiss.serialize_index(shard.state.backend.index).nbytes
    others = shard.state.cols.nbytes + shard.state.lookup.order.nbytes
    assert abs(shard.memory_bytes() - others - index_bytes) < 0.01 * index_bytes


def test_a_failed_snapshot_load_leaves_no_rerank_file_behind(tmp_path) -> None:
    shard, _, _ = filled("IVF8,PQ4x4", n=3000, tmp_path=tmp_path / "work")
    shard.snapshot(tmp_path / "snap", "1-0")
    newest = shard.snapshot(tmp_path / "snap", "2-0")
    meta = json.loads((newest / "meta.json").read_text())
    meta["rerank"]["rows"] += 1  # disagrees with its file: this snapshot cannot load
    (newest / "meta.json").write_text(json.dumps(meta))
    loaded, position = Shard.load(tmp_path / "snap", work_dir=tmp_path / "loaded")
    assert position == "1-0"  # the previous snapshot, with a longer replay
    assert [p.name for p in (tmp_path / "loaded").glob("rerank-*")] == [
        loaded.state.backend.rerank.path.name
    ]
