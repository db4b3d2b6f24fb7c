"""The compiled twins of a shard's per-query steps (`_hotpath.c`: the read lock, the query
check, the grouping of one query's hits), or None where they are not to be used: the
extension was not built (the install found no C compiler) or ``INDEX_NATIVE=0`` asks for
the Python steps, which stay the reference (tests run both and compare them)."""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("INDEX_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from workers.index import _hotpath
    except ImportError:
        return None
    return _hotpath


hotpath = _load()
