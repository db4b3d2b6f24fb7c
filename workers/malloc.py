"""glibc malloc tuning for processes that search: keep freed memory instead of unmapping it.

glibc serves allocations above a threshold (128 KB at first) with a fresh mmap and unmaps
them on free. A search makes such temporaries every time (its candidate rows), so every
query paid for fresh page faults (bench/index_bench.py measures the difference). Raising
the mmap threshold and the trim threshold lets freed blocks be reused. Costs: up to the
trim threshold of freed memory stays resident.
Operators may also set glibc's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_; then
this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

from workers.config import MemoryConfig

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(memory: MemoryConfig | None = None) -> bool:
    """Apply the thresholds (MALLOC_KEEP_MMAP_MB / MALLOC_KEEP_TRIM_MB). Returns whether
    glibc accepted them (False off glibc or when the operator configured malloc through
    glibc's own environment variables, which this then leaves alone)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    memory = memory or MemoryConfig()
    mmap_mb, trim_mb = memory.keep_mmap_mb, memory.keep_trim_mb
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_mb << 20)
    )
    logger.debug("malloc: mmap threshold %d MB, trim threshold %d MB: %s", mmap_mb, trim_mb, done)
    return done
