"""The API's JSON renderer: DRF's output, written by orjson.

DRF's renderer runs the standard library's encoder with a Python `default` hook; a page of
search cards is the largest thing most requests write, and orjson writes it an order of
magnitude faster (bench/json_render_bench.py). What orjson does not know (Decimal, lazy
translations, querysets, datetimes, which DRF writes with a "Z") goes to DRF's own encoder,
so the bytes match DRF's compact form (a float may be spelled otherwise, 2.5e-05 as
0.000025, never with another value). A client asking for indented JSON (`Accept:
application/json; indent=4`), or settings asking for ASCII or spaced JSON, get DRF's
renderer unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME
# Keys other than str (DRF writes them as json does: 1 -> "1") cost orjson twice the time
# on every dict when allowed: a document that has one is written again with them allowed.
_NON_STR_KEYS = _OPTIONS | orjson.OPT_NON_STR_KEYS
_DRF_DEFAULT = JSONEncoder().default
# DRF escapes these two for JavaScript (valid JSON, not valid in a JS string literal)
_LINE_SEPARATORS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def dumps(data: Any) -> bytes:
    """`data` as compact UTF-8 JSON, as DRF would write it."""
    try:
        out = orjson.dumps(data, default=_DRF_DEFAULT, option=_OPTIONS)
    except orjson.JSONEncodeError:
        out = orjson.dumps(data, default=_DRF_DEFAULT, option=_NON_STR_KEYS)
    if b"\xe2" in out:  # a lead byte of both (memchr: a substring search costs far more)
        for raw, escaped in _LINE_SEPARATORS:
            out = out.replace(raw, escaped)
    return out


class FastJSONRenderer(JSONRenderer):
    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        if (
            self.ensure_ascii
            or not self.compact
            or self.get_indent(accepted_media_type or "", renderer_context or {})
        ):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            return dumps(data)
        except (TypeError, orjson.JSONEncodeError):
            # what orjson refuses (an int past 64 bits, a NaN under STRICT_JSON...): DRF
            # decides, and raises where it would have
            return super().render(data, accepted_media_type, renderer_context)
