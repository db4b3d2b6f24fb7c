"""Reading a shard's `stats()`: a mapping of counts, fractions and tuned parameters whose
values are typed `object` there, narrowed here where a number or a mapping is expected."""

from __future__ import annotations

from collections.abc import Mapping


def stat_number(stats: Mapping[str, object], key: str, default: float = 0.0) -> float:
    """`default` when absent or None (a knob the index kind does not have)."""
    value = stats.get(key)
    if value is None:
        return default
    if not isinstance(value, int | float):
        raise TypeError(f"shard stat {key!r} is {type(value).__name__}, not a number")
    return float(value)


def stat_mapping(stats: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = stats.get(key) or {}
    if not isinstance(value, Mapping):
        raise TypeError(f"shard stat {key!r} is {type(value).__name__}, not a mapping")
    return value
