"""Scaling the tuned knobs to the depth of the k-th result a search needs."""

from __future__ import annotations

import math

from workers.index.depth import DepthTable
from workers.index.spec import SearchParams

REPORT = {
    "k": 10,
    "params": {"nprobe": 4},
    "depths": {"100": {"nprobe": 64, "recall": 0.97}, "1000": {"nprobe": 512, "recall": 0.96}},
}


def nprobe(table: DepthTable, k: int, kept: float = 1.0, asked: int = 4) -> int:
    return table.scaled(SearchParams(nprobe=asked), k, kept, nlist=4096).nprobe


def test_without_a_table_the_knob_grows_with_the_depth() -> None:
    """The k-th result of a filter keeping a fraction s lies near rank k/s."""
    assert nprobe(DepthTable.from_report({}), 10, 0.05) == 80
    assert nprobe(DepthTable.from_report({"k": 10, "params": {"nprobe": 4}}), 10, 0.05) == 80


def test_the_knob_follows_the_tuned_depths() -> None:
    """log-log between the tuned depths, proportional past the deepest, at most nlist."""
    table = DepthTable.from_report(REPORT)
    probes = {s: nprobe(table, 10, s) for s in (0.5, 0.1, 0.01)}
    assert probes[0.1] == 64  # depth 100, as tuned
    assert probes[0.01] == 512  # depth 1000
    assert 4 < probes[0.5] < 64
    assert nprobe(table, 10, 0.001) == 4096  # 5120, at nlist
    assert nprobe(table, 10, 0.1, asked=8) == 128  # a request's own, in proportion


def test_more_results_than_the_tuned_k_go_as_deep_as_k() -> None:
    table = DepthTable.from_report(REPORT)
    assert nprobe(table, 100) == 64
    assert nprobe(table, 5) == 4  # k=5 keeps the k=10 setting
    assert nprobe(table, 50, 0.5) == nprobe(table, 10, 0.1)


def test_an_unfiltered_scaling_is_computed_once_and_stays_what_it_was() -> None:
    table = DepthTable.from_report(REPORT)
    first = table.scaled(SearchParams(nprobe=4), 20, nlist=4096)
    assert table.scaled(SearchParams(nprobe=4), 20, nlist=4096) is first
    assert first == DepthTable.from_report(REPORT).scaled(
        SearchParams(nprobe=4), 20, 0.999999999, 4096
    )
    grow = table.factor("nprobe", 20)
    assert first.nprobe == math.ceil(4 * grow)
    assert nprobe(table, 20, asked=8) == math.ceil(8 * grow)  # other keys, other answers
    assert nprobe(table, 100) == 64
    for asked in range(1, 200):  # more keys than it keeps: it starts over, still right
        assert nprobe(table, 20, asked=asked) == min(4096, math.ceil(asked * grow))


def test_rerank_candidates_follow_the_depth_up_to_a_cap() -> None:
    table = DepthTable.from_report(REPORT)
    compressed = SearchParams(nprobe=4, rerank_k=200)
    assert table.scaled(compressed, 10, nlist=4096).rerank_k == 200
    assert table.scaled(compressed, 40, 0.5, nlist=4096).rerank_k == 1600
    assert table.scaled(compressed, 10, 0.01, nlist=4096).rerank_k == 10_000


def test_a_graph_scales_its_ef_search_and_a_report_without_the_knob_is_proportional() -> None:
    report = {"k": 10, "params": {"ef_search": 64}, "depths": {"100": {"ef_search": 256}}}
    table = DepthTable.from_report(report)
    assert table.scaled(SearchParams(ef_search=64), 10, 0.1).ef_search == 256
    assert table.scaled(SearchParams(ef_search=64), 10, 0.01).ef_search == 2560  # past: x10
    assert table.factor("nprobe", 100) == 10.0  # the report tunes no nprobe


def test_measured_candidates_scale_with_the_results_asked_for() -> None:
    """A compressed shard's table holds the candidates a filter keeping k/depth needed
    for the tuned k; twice the results need twice the candidates of the same depth."""
    report = {
        "k": 10,
        "params": {"nprobe": 4, "rerank_k": 50},
        "depths": {
            "100": {"nprobe": 64, "rerank_k": 400},
            "1000": {"nprobe": 512, "rerank_k": 800},
        },
    }
    table = DepthTable.from_report(report)
    asked = SearchParams(nprobe=4, rerank_k=50)
    assert table.scaled(asked, 10, 0.1, nlist=4096).rerank_k == 400  # as measured
    assert table.scaled(asked, 10, 0.01, nlist=4096).rerank_k == 800
    assert table.scaled(asked, 20, 0.2, nlist=4096).rerank_k == 800  # depth 100, k 20
    assert 400 < table.scaled(asked, 10, 0.05, nlist=4096).rerank_k < 800
    assert table.scaled(asked, 10, 0.0001, nlist=4096).rerank_k == 10_000  # the cap
