"""The index artifact store: shard builds and snapshots published to an object store
(``file://``, ``s3://``) with checksums and the log position they cover, so that replicas
on any host can fetch and verify them. Django-free, like the rest of ``workers.index``.
"""

from workers.index.artifacts.model import Artifact, ArtifactError, CorruptArtifact
from workers.index.artifacts.store import ArtifactStore

__all__ = ["Artifact", "ArtifactError", "ArtifactStore", "CorruptArtifact"]
