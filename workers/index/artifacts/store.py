"""ArtifactStore: shard builds and snapshots in an object store, through fsspec.

Layout: ``<url>/shard-<n>/<artifact_id>/<files>`` plus ``manifest.json``, written last:
its presence is the commit (S3 has no rename). On a local store the folder is also
filled under a temporary name and renamed into place, so not even a manifest-less
folder shows. Everything read back is checked before it is trusted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from workers.index.artifacts import cache, manifest
from workers.index.artifacts.model import (
    ARTIFACT_ID,
    MANIFEST,
    Artifact,
    ArtifactError,
    CorruptArtifact,
    check_build_id,
    check_file_name,
    new_artifact_id,
    newest_first,
)
from workers.index.artifacts.remote import Remote
from workers.index.artifacts.retention import garbage

logger = logging.getLogger(__name__)

Artifacts = list[Artifact]
Names = list[str]  # (inside ArtifactStore, `list` is its method)
STAGING_PREFIX = ".tmp-"


class ArtifactStore:
    """Publish, list, fetch and collect the artifacts of every shard under one URL."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        if "://" not in url:
            if not os.path.isabs(url):
                raise ValueError(f"artifact store path must be absolute: {url!r}")
            url = "file://" + url
        elif url.startswith("file://") and not url.startswith("file:///"):
            raise ValueError(f"file:// store URL must hold an absolute path: {url!r}")
        self.url = url
        self._remote = Remote(url, storage_options or {})

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    def publish(
        self,
        shard: int,
        local_dir: Path,
        *,
        kind: str,
        build_id: str,
        log_position: str,
        meta: dict[str, Any],
    ) -> Artifact:
        """Upload every file of the flat folder `local_dir`, then commit it with its manifest.

        Files are streamed and hashed as they are read. A publish that fails removes what
        it uploaded where it can; one that dies leaves it to `collect_garbage`."""
        _check_shard(shard)
        check_build_id(build_id)
        artifact_id = new_artifact_id(log_position, kind)
        _check_meta(meta)
        sources = _local_files(Path(local_dir))
        remote = self._remote
        final = self._folder(shard, artifact_id)
        staging = final
        if remote.local:
            staging = f"{self._shard_dir(shard)}/{STAGING_PREFIX}{artifact_id}"
        try:
            remote.makedirs(staging)
            files = {path.name: remote.upload(path, f"{staging}/{path.name}") for path in sources}
            artifact = Artifact(
                shard=shard,
                artifact_id=artifact_id,
                kind=kind,
                build_id=build_id,
                log_position=log_position,
                uri=remote.uri(final),
                files=files,
                meta=meta,
                created=time.time(),
            )
            self._commit(staging, final, manifest.encode(artifact))
        except Exception as exc:
            self._discard(staging)
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError(f"publishing {remote.uri(final)}: {exc}") from exc
        logger.info("published %s (%d files)", artifact.uri, len(files))
        return artifact

    def _commit(self, staging: str, final: str, raw_manifest: bytes) -> None:
        """Write the manifest, last; on a local store, rename the folder into place."""
        self._remote.write_bytes(f"{staging}/{MANIFEST}", raw_manifest)
        if staging != final:
            cache.fsync_path(staging)
            os.rename(staging, final)
            cache.fsync_path(os.path.dirname(final))

    def list(self, shard: int) -> Artifacts:
        """Committed artifacts of `shard`, newest log position first.

        A folder whose manifest is malformed or unreadable is logged and skipped; a store
        that cannot be listed raises ArtifactError."""
        artifacts, _uncommitted = self._scan(shard)
        return newest_first(artifacts)

    def _scan(self, shard: int) -> tuple[Artifacts, Names]:
        """(committed artifacts, names of uploads that never committed) under the shard."""
        _check_shard(shard)
        base = self._shard_dir(shard)
        artifacts, uncommitted = [], []
        for name in self._remote.names(base) or []:
            if name.startswith(STAGING_PREFIX):
                uncommitted.append(name)
                continue
            if not ARTIFACT_ID.fullmatch(name):
                continue
            folder = f"{base}/{name}"
            try:
                raw = self._remote.read_head(f"{folder}/{MANIFEST}", manifest.MAX_BYTES + 1)
                if raw is None:
                    uncommitted.append(name)
                    continue
                uri = self._remote.uri(folder)
                artifacts.append(manifest.decode(raw, shard=shard, artifact_id=name, uri=uri))
            except CorruptArtifact as exc:
                logger.warning("skipping artifact: %s", exc)
        return artifacts, uncommitted

    def fetch(self, artifact: Artifact, cache_dir: Path) -> Path:
        """A verified local copy of `artifact` at ``cache_dir/<artifact_id>/``.

        A copy verified earlier is returned as it is; otherwise every file is downloaded
        into a temporary folder, checked for size and sha256, and the folder renamed into
        place. CorruptArtifact when a file is missing or differs (nothing is left behind)."""
        name, files = _checked_listing(artifact)
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        final = cache_dir / name
        if cache.is_verified(final, files):
            return final
        if final.exists():
            logger.warning("%s: cached copy does not match its manifest; fetching again", final)
            shutil.rmtree(final)
        temp = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=cache_dir))
        try:
            source = self._folder(artifact.shard, name)
            for file_name, (sha, size) in sorted(files.items()):
                self._remote.download(f"{source}/{file_name}", temp / file_name, sha, size)
            cache.write_marker(temp, files)
            cache.fsync_path(temp)
            try:
                os.rename(temp, final)
            except OSError:
                if not cache.is_verified(final, files):
                    raise
                shutil.rmtree(temp)  # another fetcher put a verified copy there first
            cache.fsync_path(cache_dir)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        logger.info("fetched %s into %s", artifact.uri, final)
        return final

    def delete(self, artifact: Artifact) -> None:
        """Remove an artifact: its manifest first, so nobody lists a half-deleted one."""
        name, _files = _checked_listing(artifact)
        folder = self._folder(artifact.shard, name)
        self._remote.remove_file(f"{folder}/{MANIFEST}")
        self._remote.remove_tree(folder)

    def collect_garbage(
        self,
        shard: int,
        *,
        current_build: str | None,
        keep_snapshots: int = 2,
        grace_s: float = 600.0,
        now: float | None = None,
    ) -> Artifacts:
        """Delete what no replica should need; return the committed artifacts deleted.

        Kept: the current build's build artifact, its newest `keep_snapshots` snapshots
        and anything younger than `grace_s`. Uploads that never committed go once older
        than `grace_s`. Folders with a malformed manifest stay (they may be a newer format)."""
        now = time.time() if now is None else now
        artifacts, uncommitted = self._scan(shard)
        doomed = garbage(
            artifacts,
            current_build=current_build,
            keep_snapshots=keep_snapshots,
            grace_s=grace_s,
            now=now,
        )
        for artifact in doomed:
            self.delete(artifact)
            logger.info("deleted artifact %s", artifact.uri)
        for name in uncommitted:
            folder = f"{self._shard_dir(shard)}/{name}"
            changed = self._remote.last_change(folder)
            if changed is not None and now - changed > grace_s:
                self._remote.remove_tree(folder)
                logger.info("deleted uncommitted upload %s", self._remote.uri(folder))
        return doomed

    def _discard(self, folder: str) -> None:
        """Best-effort removal of a failed upload; what stays is collect_garbage's."""
        try:
            self._remote.remove_tree(folder)
        except ArtifactError as exc:  # the store may be what failed
            logger.warning("could not remove a failed upload: %s", exc)

    def _shard_dir(self, shard: int) -> str:
        return f"{self._remote.root}/shard-{shard}"

    def _folder(self, shard: int, artifact_id: str) -> str:
        return f"{self._shard_dir(shard)}/{artifact_id}"


def _check_shard(shard: int) -> None:
    if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
        raise ValueError(f"not a shard number: {shard!r}")


def _check_meta(meta: object) -> None:
    """Meta that the manifest reader will accept back: a JSON object, with room to spare
    under the manifest's size cap (a manifest list() skips is an artifact nobody sees)."""
    if not isinstance(meta, dict):
        raise ValueError(f"artifact meta is not a JSON object: {type(meta).__name__}")
    try:
        encoded = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"artifact meta is not plain JSON: {exc}") from exc
    if len(encoded) > manifest.MAX_BYTES // 2:
        raise ValueError(f"artifact meta is larger than {manifest.MAX_BYTES // 2} bytes")


def _checked_listing(artifact: Artifact) -> tuple[str, dict[str, tuple[str, int]]]:
    """The artifact's id and file list, checked again: they become local paths."""
    _check_shard(artifact.shard)
    if not ARTIFACT_ID.fullmatch(artifact.artifact_id):
        raise CorruptArtifact(f"not an artifact id: {artifact.artifact_id!r}")
    try:
        files = {check_file_name(name): entry for name, entry in artifact.files.items()}
    except ValueError as exc:
        raise CorruptArtifact(f"{artifact.uri}: {exc}") from exc
    return artifact.artifact_id, files


def _local_files(local_dir: Path) -> list[Path]:
    """The files to publish, sorted; a subfolder or a reserved name is refused up front."""
    if not local_dir.is_dir():
        raise ValueError(f"not a folder: {local_dir}")
    files = []
    for path in sorted(local_dir.iterdir()):
        if path.is_dir():
            raise ValueError(f"{path}: artifacts are flat folders")
        if not path.is_file():
            logger.warning("not publishing %s: not a regular file", path)
            continue
        check_file_name(path.name)
        files.append(path)
    return files
