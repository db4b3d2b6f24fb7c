"""Local image files for imports: read only regular files under the import root.

An import file names image paths; without a root any readable file on the host (keys,
/etc/shadow when run as root) would be copied into public media. Every refusal gives the
same message, so that the import's report tells nothing about what exists outside the root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from catalog.errors import ServiceError

# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused after fstat anyway).
# O_NOFOLLOW: the path is resolved before the check; a symlink swapped in since is refused.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def refused(source: str) -> ServiceError:
    return ServiceError(
        f"image path refused: {source} is not a file under the import root",
        code="image_path_refused",
    )


def import_root_path(*, source: str, root: Path) -> Path:
    """The resolved path of `source` (relative ones are taken from `root`) if it is under it."""
    try:
        base = root.resolve(strict=True)
        # Symlinks and ".." are resolved first, so neither can lead out of the root.
        path = (base / source).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL byte
        raise refused(source) from None
    if path == base or not path.is_relative_to(base):
        raise refused(source)
    return path


def import_file_read(*, source: str, root: Path, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes of the regular file `source` names under `root`.

    The caller's size check sees a longer file as too large without it being read whole.
    """
    path = import_root_path(source=source, root=root)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:  # unreadable, or a symlink swapped in after the check
        raise refused(source) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a device, FIFO, socket or folder
            raise refused(source)
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        raise refused(source) from None
    finally:
        os.close(fd)
