"""Which committed artifacts a shard keeps: pure selection, no I/O."""

from __future__ import annotations

import logging

from workers.index.artifacts.model import Artifact, newest_first

logger = logging.getLogger(__name__)


def retained(
    artifacts: list[Artifact], *, current_build: str | None, keep_snapshots: int
) -> set[str]:
    """Ids to keep whatever their age: the current build's newest "build" artifact and the
    newest `keep_snapshots` snapshots of that build.

    With no current build named, the newest build artifact's generation is current. A shard
    that never had a build (its first generation comes from the log alone) keeps its newest
    snapshots. Otherwise, when the current generation has no build artifact in the store,
    everything is kept: nothing is provably superseded, and a replica may still need the
    older generation to start."""
    if keep_snapshots < 0:
        raise ValueError(f"keep_snapshots must be >= 0, not {keep_snapshots}")
    ordered = newest_first(artifacts)
    builds = [a for a in ordered if a.kind == "build"]
    if current_build is None and builds:
        current_build = builds[0].build_id
    current = [a for a in builds if a.build_id == current_build]
    snapshots = [a for a in ordered if a.kind == "snapshot" and a.build_id == current_build]
    if not builds and snapshots:
        return {a.artifact_id for a in snapshots[:keep_snapshots]}
    if not current:
        if artifacts:
            logger.warning(
                "shard %s: no build artifact of generation %r; keeping every artifact",
                artifacts[0].shard,
                current_build,
            )
        return {a.artifact_id for a in artifacts}
    return {current[0].artifact_id, *(a.artifact_id for a in snapshots[:keep_snapshots])}


def garbage(
    artifacts: list[Artifact],
    *,
    current_build: str | None,
    keep_snapshots: int,
    grace_s: float,
    now: float,
) -> list[Artifact]:
    """Artifacts outside the retention set and published more than `grace_s` ago (a younger
    one may be what a replica is downloading right now), newest first."""
    keep = retained(artifacts, current_build=current_build, keep_snapshots=keep_snapshots)
    return [
        a
        for a in newest_first(artifacts)
        if a.artifact_id not in keep and now - a.created > grace_s
    ]
