"""Atomic snapshot directories with checksums: write to a temporary name, fsync, rename.

Layout: ``<shard dir>/snap-<seq>/`` holding the files and ``meta.json`` (written last,
listing every file with its sha256). The newest ``KEEP`` snapshots are kept so that a
corrupt newest one can fall back to the previous one (with a longer log replay).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

KEEP = 2
META = "meta.json"
_CHUNK = 1 << 20


class CorruptSnapshot(Exception):
    """A snapshot whose files do not match the checksums in its metadata."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_dirs(directory: Path) -> list[Path]:
    """Complete snapshot directories, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("snap-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)


def new_temp_dir(directory: Path) -> tuple[Path, Path]:
    """(temporary dir to fill, final name) for the next snapshot sequence number."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = snapshot_dirs(directory)
    seq = int(existing[0].name[5:]) + 1 if existing else 1
    final = directory / f"snap-{seq:08d}"
    temp = directory / f".tmp-snap-{seq:08d}-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir()
    return temp, final


def commit(temp: Path, final: Path, meta: dict[str, object], known: dict[str, str]) -> Path:
    """Checksum the files (reusing `known` sums), write meta.json last, fsync, rename, prune."""
    files = {}
    for path in sorted(temp.iterdir()):
        files[path.name] = known.get(path.name) or sha256_file(path)
    meta = {**meta, "files": files}
    meta_path = temp / META
    with open(meta_path, "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    for path in temp.iterdir():
        _fsync_path(path)
    _fsync_path(temp)
    os.rename(temp, final)
    _fsync_path(final.parent)
    for old in snapshot_dirs(final.parent)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_meta(snap: Path, verify: bool = True) -> dict[str, object]:
    """The metadata of a snapshot; raises CorruptSnapshot if anything is missing or altered."""
    try:
        with open(snap / META) as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CorruptSnapshot(f"{snap}: unreadable {META}: {exc}") from exc
    files = meta.get("files")
    if not isinstance(files, dict):
        raise CorruptSnapshot(f"{snap}: no file list")
    if verify:
        for name, expected in files.items():
            path = snap / name
            if not path.is_file() or sha256_file(path) != expected:
                raise CorruptSnapshot(f"{snap}: checksum mismatch for {name}")
    return meta


def valid_snapshots(directory: Path) -> Iterator[tuple[Path, dict[str, object]]]:
    """Verified snapshots, newest first; corrupt ones are logged and skipped."""
    for snap in snapshot_dirs(directory):
        try:
            yield snap, read_meta(snap)
        except CorruptSnapshot as exc:
            logger.warning("skipping corrupt snapshot: %s", exc)


def kept_positions(directory: Path) -> list[str]:
    """Log positions of the snapshots on disk (unverified), newest first."""
    positions = []
    for snap in snapshot_dirs(directory):
        try:
            positions.append(str(read_meta(snap, verify=False)["log_position"]))
        except (CorruptSnapshot, KeyError):
            continue
    return positions


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
