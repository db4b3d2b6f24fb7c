"""Decisions of a shard's index lifecycle across hosts, as plain functions over what is known.

Which build generation is current, which artifacts a replica may start from, and how far
the update log may be trimmed: every replica and the builder decide the same way from
the same inputs (the build pointer, the store's listing, the live members).
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.index.artifacts import Artifact
from workers.index.build_pointer import INITIAL_BUILD, BuildPointer
from workers.index.log import parse_id
from workers.index.membership import MemberState, oldest_needed


def generation(pointer: BuildPointer | None, artifacts: Sequence[Artifact]) -> str:
    """The current build id: the pointer's; else the newest build in the store; else initial."""
    if pointer is not None:
        return pointer.build_id
    builds = [a for a in artifacts if a.kind == "build"]
    if builds:
        return max(builds, key=lambda a: (a.created, parse_id(a.log_position))).build_id
    return INITIAL_BUILD


def candidates(artifacts: Sequence[Artifact], build_id: str) -> list[Artifact]:
    """The artifacts of one generation a replica may start from, newest position first."""
    same = [a for a in artifacts if a.build_id == build_id]
    return sorted(same, key=lambda a: parse_id(a.log_position), reverse=True)


def trim_floor(
    members: Sequence[MemberState],
    artifacts: Sequence[Artifact],
    build_id: str,
    keep: int = 2,
) -> str | None:
    """How far the log may be trimmed: never past the oldest of the `keep` newest artifacts
    of the current generation (a replica that finds the newest corrupt starts from the one
    before and replays the rest), nor past a live member's position (a replica catching
    up, a build in progress). None: keep everything."""
    newest = candidates(artifacts, build_id)[: max(1, keep)]
    if not newest:
        return None
    floor = newest[-1].log_position
    needed = oldest_needed(list(members))
    if needed is not None and parse_id(needed) < parse_id(floor):
        floor = needed
    return floor
