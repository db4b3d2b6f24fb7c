"""Streaming copies that hash as they go, so multi-gigabyte files never sit in memory."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

CHUNK = 8 << 20


def copy_hashing(src: BinaryIO, dst: BinaryIO, *, limit: int | None = None) -> tuple[str, int]:
    """Copy `src` to `dst` in chunks; (sha256 hex, bytes copied).

    With `limit`, at most `limit + 1` bytes are copied: enough for the caller to see that a
    file is longer than promised without downloading all of an oversized one."""
    digest = hashlib.sha256()
    size = 0
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit + 1 - size)
        if want <= 0:
            break
        chunk = src.read(want)
        if not chunk:
            break
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
