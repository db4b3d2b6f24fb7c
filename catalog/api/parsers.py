"""A JSON parser that refuses deep nesting with a 400 instead of a RecursionError (a 500).

Python's json decoder recurses once per nesting level: a body of 100,000 `[` exhausts
the interpreter's recursion limit, and bodies just under that limit still build
objects that every later recursive walk (serializers, logging) trips over. No request
of this API nests more than a few levels, so anything past `MAX_DEPTH` is refused.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` (parsed JSON) nests lists/objects deeper than `limit`, walked
    without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser with a nesting limit: deeper bodies are a ParseError (400)."""

    max_depth = MAX_DEPTH

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        too_deep = f"JSON nested deeper than {self.max_depth} levels."
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(too_deep) from None
        if isinstance(data, dict | list) and json_depth_exceeds(data, self.max_depth):
            raise ParseError(too_deep)
        return data
