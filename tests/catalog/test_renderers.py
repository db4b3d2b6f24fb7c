"""The orjson renderer writes what DRF's own JSON renderer writes: the same bytes, except
that a float may be spelled otherwise (2.5e-05 as 0.000025), never with another value."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import pytest
from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from catalog.api.renderers import FastJSONRenderer

DRF, FAST = JSONRenderer(), FastJSONRenderer()

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    | st.datetimes(timezones=st.just(datetime.UTC) | st.none())
    | st.dates()
    | st.uuids()
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_documents)
def test_same_json_as_drf(data: object) -> None:
    assert json.loads(FAST.render({"v": data})) == json.loads(DRF.render({"v": data}))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_keep_their_value(value: float) -> None:
    assert json.loads(FAST.render([value])) == [value]


@pytest.mark.parametrize(
    "data",
    [
        {"line": "a\u2028b\u2029c", "accents": "café ☕"},
        {1: "int key", "price": decimal.Decimal("19.90")},
        {"lazy": gettext_lazy("Products"), "span": datetime.timedelta(seconds=90)},
        {"when": datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)},
        {"id": uuid.UUID(int=7), "nested": [[{"deep": [1, 2.5, None]}]]},
    ],
)
def test_what_drf_encodes_itself(data: dict) -> None:
    assert FAST.render(data) == DRF.render(data)


def test_ints_past_64_bits_are_left_to_drf() -> None:
    assert FAST.render({"big": 1 << 80}) == DRF.render({"big": 1 << 80})


def test_indented_json_when_asked() -> None:
    indented = FAST.render({"a": [1]}, "application/json; indent=2", {})
    assert indented == DRF.render({"a": [1]}, "application/json; indent=2", {})
    assert b"\n" in indented


def test_nothing_for_no_data() -> None:
    assert FAST.render(None) == b""
