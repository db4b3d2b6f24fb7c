"""What an artifact is: its record, its errors, and how its id and file names are formed."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

KINDS = ("build", "snapshot")
MANIFEST = "manifest.json"

# The id sorts by log position, so a plain listing of a shard's folder is in log order.
ARTIFACT_ID = re.compile(r"^(\d{15})-(\d{6})-(build|snapshot)-[0-9a-f]{8}$")
LOG_POSITION = re.compile(r"^(\d{1,15})-(\d{1,6})$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MAX_BUILD_ID = 200


class ArtifactError(Exception):
    """The store could not be reached or listed; worth retrying later."""


class CorruptArtifact(ArtifactError):
    """An artifact whose files or manifest do not match what was published."""


@dataclass(frozen=True)
class Artifact:
    """One committed artifact: a shard's state at a log position, as its manifest says."""

    shard: int
    artifact_id: str
    kind: str
    build_id: str
    log_position: str
    uri: str
    files: dict[str, tuple[str, int]]
    meta: dict[str, object]
    created: float

    @property
    def position(self) -> tuple[int, int]:
        """The log position as numbers, for ordering (string order is wrong across lengths)."""
        return parse_log_position(self.log_position)


def parse_log_position(log_position: str) -> tuple[int, int]:
    """(ms, seq) of a Redis stream id "ms-seq"; ValueError when it is not one."""
    match = LOG_POSITION.fullmatch(log_position) if isinstance(log_position, str) else None
    if match is None:
        raise ValueError(f"not a log position: {log_position!r}")
    return int(match[1]), int(match[2])


def new_artifact_id(log_position: str, kind: str) -> str:
    """A fresh id that sorts by log position; the random tail keeps two publishers apart."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind: {kind!r}")
    ms, seq = parse_log_position(log_position)
    return f"{ms:015d}-{seq:06d}-{kind}-{secrets.token_hex(4)}"


def check_file_name(name: object) -> str:
    """A plain file name that stays inside the artifact's folder; ValueError otherwise.

    Names starting with a dot are reserved for the store's own markers and temporary
    folders, and the manifest's own name cannot be an artifact file."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 255
        or name.startswith(".")
        or name == MANIFEST
        or any(c in name for c in "/\\\0")
        or not name.isprintable()
    ):
        raise ValueError(f"not a plain file name: {name!r}")
    return name


def check_build_id(build_id: object) -> str:
    """A non-empty printable id of bounded length (it is written to logs and manifests)."""
    if not isinstance(build_id, str) or not build_id or len(build_id) > MAX_BUILD_ID:
        raise ValueError(f"not a build id: {build_id!r}")
    if not build_id.isprintable():
        raise ValueError(f"not a build id: {build_id!r}")
    return build_id


def newest_first(artifacts: list[Artifact]) -> list[Artifact]:
    """By log position, newest first; publication time then id break ties."""
    return sorted(artifacts, key=lambda a: (a.position, a.created, a.artifact_id), reverse=True)
