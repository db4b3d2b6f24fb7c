"""The store's side of every transfer, through fsspec, with its failures sorted out:
ArtifactError for a store that fails (worth retrying), CorruptArtifact for data that is
wrong, None for a path that is not there."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from workers.index.artifacts import cache
from workers.index.artifacts.model import ArtifactError, CorruptArtifact
from workers.index.artifacts.transfer import CHUNK, copy_hashing

# An unreachable store must fail in seconds, not hang a replica's start for minutes.
S3_DEFAULTS: dict[str, Any] = {
    "use_listings_cache": False,
    "config_kwargs": {
        "connect_timeout": 5,
        "read_timeout": 60,
        "retries": {"total_max_attempts": 3, "mode": "standard"},
    },
}


class Remote:
    """One fsspec filesystem and the root path of the store on it."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        protocol = url.split("://", 1)[0]
        self.fs, root = fsspec.core.url_to_fs(url, **with_defaults(protocol, storage_options))
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    def uri(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))

    def names(self, folder: str) -> list[str] | None:
        """Names of the entries of `folder`, read afresh (never a cached listing)."""
        try:
            self.fs.invalidate_cache(folder)
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise ArtifactError(f"cannot list {self.uri(folder)}: {exc}") from exc
        return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries]

    def read_head(self, path: str, limit: int) -> bytes | None:
        """At most `limit` bytes from the start of a small file; None when it is missing.

        Read through an open file rather than a ranged cat_file: S3 answers a byte range
        on an empty object with 416, and one empty manifest must not fail a listing."""
        try:
            with self.fs.open(path, "rb", block_size=limit, cache_type="none") as fh:
                return bytes(fh.read(limit))
        except FileNotFoundError:
            return None
        except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            raise CorruptArtifact(f"{self.uri(path)}: unreadable: {exc}") from exc
        except Exception as exc:
            raise ArtifactError(f"cannot read {self.uri(path)}: {exc}") from exc

    def makedirs(self, folder: str) -> None:
        if self.local:  # object stores have no folders to make
            self.fs.makedirs(folder, exist_ok=True)

    def upload(self, source: Path, target: str) -> tuple[str, int]:
        """Stream a local file to `target`; (sha256, size) of what was sent."""
        with open(source, "rb") as src, self.fs.open(target, "wb") as dst:
            sha, size = copy_hashing(src, dst)
        if self.local:
            cache.fsync_path(target)
        elif (stored := self.fs.info(target)["size"]) != size:
            raise ArtifactError(f"{self.uri(target)}: {stored} bytes stored, {size} sent")
        return sha, size

    def write_bytes(self, target: str, raw: bytes) -> None:
        self.fs.pipe_file(target, raw)
        if self.local:
            cache.fsync_path(target)

    def download(self, source: str, target: Path, sha: str, size: int) -> None:
        """Stream `source` to a local file, checking it against its expected size and sum."""
        uri = self.uri(source)
        try:
            with self.fs.open(source, "rb", block_size=CHUNK) as src, open(target, "wb") as dst:
                got_sha, got_size = copy_hashing(src, dst, limit=size)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError as exc:
            raise CorruptArtifact(f"{uri}: missing from the store") from exc
        except Exception as exc:
            raise ArtifactError(f"cannot download {uri}: {exc}") from exc
        if got_size != size:
            longer = "more than " if got_size > size else ""
            raise CorruptArtifact(f"{uri}: {longer}{got_size} bytes, manifest says {size}")
        if got_sha != sha:
            raise CorruptArtifact(f"{uri}: sha256 {got_sha}, manifest says {sha}")

    def remove_file(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise ArtifactError(f"cannot delete {self.uri(path)}: {exc}") from exc

    def remove_tree(self, folder: str) -> None:
        try:
            self.fs.rm(folder, recursive=True)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise ArtifactError(f"cannot delete {self.uri(folder)}: {exc}") from exc

    def last_change(self, folder: str) -> float | None:
        """When anything under `folder` was last written, by the store's clock."""
        try:
            infos = list(self.fs.find(folder, withdirs=True, detail=True).values())
            infos.append(self.fs.info(folder))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise ArtifactError(f"cannot stat {self.uri(folder)}: {exc}") from exc
        times = [t for t in map(_modified, infos) if t is not None]
        return max(times) if times else None


def with_defaults(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """The caller's storage options over ours (config_kwargs merged key by key)."""
    if protocol not in ("s3", "s3a"):
        return dict(options)
    merged = {**S3_DEFAULTS, **options}
    merged["config_kwargs"] = {**S3_DEFAULTS["config_kwargs"], **options.get("config_kwargs", {})}
    return merged


def _modified(info: dict[str, Any]) -> float | None:
    value = info.get("mtime", info.get("LastModified"))
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
