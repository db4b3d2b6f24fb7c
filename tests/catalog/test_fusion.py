"""Reciprocal rank fusion: products both rankings like come first, ties by id."""

from __future__ import annotations

import pytest

from catalog.lexical.fusion import RRF_K, fuse


def test_agreement_beats_one_first_place():
    fused = fuse([[1, 2, 3], [4, 2, 5]])
    assert fused[0][0] == 2  # second in both beats first in one
    assert [pid for pid, _ in fused[1:3]] == [1, 4]  # tied: the smaller id first
    assert fused[1][1] == fused[2][1]


def test_relevance_is_in_zero_one_and_one_only_when_first_everywhere():
    fused = fuse([[7, 8], [7, 9]])
    assert fused[0] == (7, 1.0)
    assert all(0 < score < 1 for _, score in fused[1:])
    single = fuse([[3, 1, 2]])
    assert [pid for pid, _ in single] == [3, 1, 2]
    assert single[1][1] == pytest.approx((RRF_K + 1) / (RRF_K + 2))


def test_nothing_to_fuse():
    assert fuse([]) == []
    assert fuse([[], []]) == []
