"""manifest.json: what a publisher writes last, and the checks it must pass when read back.

A manifest comes from a shared store, so every field is checked before it is trusted;
its `uri` is never read back (the reader knows where it found the folder).
"""

from __future__ import annotations

import json
import math

from workers.index.artifacts.model import (
    ARTIFACT_ID,
    KINDS,
    SHA256_HEX,
    Artifact,
    CorruptArtifact,
    check_build_id,
    check_file_name,
    parse_log_position,
)

FORMAT = 1
MAX_BYTES = 1 << 20


def encode(artifact: Artifact) -> bytes:
    """The manifest of `artifact`, as UTF-8 JSON."""
    doc = {
        "format": FORMAT,
        "shard": artifact.shard,
        "artifact_id": artifact.artifact_id,
        "kind": artifact.kind,
        "build_id": artifact.build_id,
        "log_position": artifact.log_position,
        "created": artifact.created,
        "files": {
            name: {"sha256": sha, "size": size} for name, (sha, size) in artifact.files.items()
        },
        "meta": artifact.meta,
    }
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode()


def decode(raw: bytes, *, shard: int, artifact_id: str, uri: str) -> Artifact:
    """The artifact a manifest found at `<shard>/<artifact_id>/` describes.

    Raises CorruptArtifact when it is not valid JSON, not this format, or disagrees with
    the folder it was found in."""
    if len(raw) > MAX_BYTES:
        raise CorruptArtifact(f"{uri}: manifest larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise CorruptArtifact(f"{uri}: manifest is not JSON: {exc}") from exc
    try:
        return _checked(doc, shard=shard, artifact_id=artifact_id, uri=uri)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CorruptArtifact(f"{uri}: bad manifest: {exc}") from exc


def _checked(doc: object, *, shard: int, artifact_id: str, uri: str) -> Artifact:
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
    if _int(doc["shard"], "shard") != shard:
        raise ValueError(f"shard {doc['shard']!r} found under shard {shard}")
    if doc["artifact_id"] != artifact_id:
        raise ValueError(f"artifact_id {doc['artifact_id']!r} found in folder {artifact_id}")
    match = ARTIFACT_ID.fullmatch(artifact_id)
    if match is None:
        raise ValueError(f"not an artifact id: {artifact_id!r}")
    kind = doc["kind"]
    if kind not in KINDS or kind != match[3]:
        raise ValueError(f"kind {kind!r} does not match id {artifact_id}")
    log_position = doc["log_position"]
    if parse_log_position(log_position) != (int(match[1]), int(match[2])):
        raise ValueError(f"log_position {log_position!r} does not match id {artifact_id}")
    created = doc["created"]
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise ValueError(f"created is not a number: {created!r}")
    if not math.isfinite(created):
        raise ValueError(f"created is not finite: {created!r}")
    meta = doc["meta"]
    if not isinstance(meta, dict):
        raise ValueError("meta is not an object")
    return Artifact(
        shard=shard,
        artifact_id=artifact_id,
        kind=kind,
        build_id=check_build_id(doc["build_id"]),
        log_position=log_position,
        uri=uri,
        files=_files(doc["files"]),
        meta=meta,
        created=float(created),
    )


def _files(files: object) -> dict[str, tuple[str, int]]:
    if not isinstance(files, dict):
        raise ValueError("files is not an object")
    checked = {}
    for name, entry in files.items():
        if not isinstance(entry, dict):
            raise ValueError(f"file entry {name!r} is not an object")
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
            raise ValueError(f"bad sha256 for {name!r}")
        size = _int(entry.get("size"), f"size of {name!r}")
        if size < 0:
            raise ValueError(f"negative size for {name!r}")
        checked[check_file_name(name)] = (sha, size)
    return checked


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} is not an integer: {value!r}")
    return value
