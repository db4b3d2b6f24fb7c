"""The local side: durable writes and the marker that says a fetched copy was verified."""

from __future__ import annotations

import json
import os
from pathlib import Path

MARKER = ".verified"


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file or directory to disk, so a rename after it never exposes lost data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_marker(folder: Path, files: dict[str, tuple[str, int]]) -> None:
    """Record, inside a fully verified folder, which files and sums it was verified against."""
    with open(folder / MARKER, "w") as fh:
        json.dump(_marker_doc(files), fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def is_verified(folder: Path, files: dict[str, tuple[str, int]]) -> bool:
    """Whether `folder` was verified against exactly `files` and still has every file at its
    size (a cheap stat, not a re-hash: the sums were checked when it was fetched)."""
    try:
        with open(folder / MARKER) as fh:
            recorded = json.load(fh)
    except (OSError, ValueError):
        return False
    if recorded != _marker_doc(files):
        return False
    for name, (_sha, size) in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def _marker_doc(files: dict[str, tuple[str, int]]) -> dict[str, list[object]]:
    return {name: [sha, size] for name, (sha, size) in files.items()}
