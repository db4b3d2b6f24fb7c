"""A private, writable memory map of a file with zeroed room after its end, in one range.

A compressed shard's re-rank rows live in a file that snapshots hard-link, so it must
never change; yet the rows of fresh vectors have to sit right after the file's rows, in
the same contiguous array, for FAISS to re-score them in the same C++ call. A
copy-on-write mapping (``MAP_PRIVATE``) gives both: pages never written stay the page
cache's (shared, dropped under memory pressure), written pages become this process's
own memory, and the file is untouched. The room is anonymous memory mapped first, the
file then mapped over its start with ``MAP_FIXED``, which Python's ``mmap`` module lacks.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref
from pathlib import Path

import numpy as np

_MAP_FIXED = 0x10  # the same on Linux and macOS; not exported by the mmap module
_PROT = mmap.PROT_READ | mmap.PROT_WRITE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int64,
)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_FAILED = ctypes.c_void_p(-1).value


def map_with_room(path: Path, room: int) -> np.ndarray:
    """uint8 array of the file's bytes followed by `room` zero bytes, writable; writes
    never reach the file. Unmapped when the array and every view of it are gone."""
    if room < 0:
        raise ValueError("room must be >= 0")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        total = size + room
        if total == 0:
            return np.zeros(0, dtype=np.uint8)
        base = _mapped(None, total, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
        if size:
            try:
                _mapped(base, size, mmap.MAP_PRIVATE | _MAP_FIXED, fh.fileno())
            except OSError:
                _libc.munmap(base, total)
                raise
    memory = (ctypes.c_uint8 * total).from_address(base)
    weakref.finalize(memory, _libc.munmap, base, total)
    return np.frombuffer(memory, dtype=np.uint8)  # type: ignore[call-overload]  # holds `memory`: views keep it mapped


def _mapped(address: int | None, length: int, flags: int, fd: int) -> int:
    got = _libc.mmap(address, length, _PROT, flags, fd, 0)
    if got in (None, _FAILED) or (address is not None and got != address):
        errno = ctypes.get_errno()
        raise OSError(errno, f"mmap of {length} bytes failed: {os.strerror(errno)}")
    return got
