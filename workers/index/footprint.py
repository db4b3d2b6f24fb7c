"""Resident bytes of a shard's FAISS indexes, counted from their sizes: serialising an index
to measure it (the general way) copies it whole, every few seconds when metrics are reported."""

from __future__ import annotations

import faiss

MAP_BYTES = 48  # per entry of a label -> list position hash map (std::unordered_map)


def bulk_bytes(bulk: faiss.Index, ivf: faiss.IndexIVF | None, mapped: bool) -> int:
    """Bytes of a bulk index (`ivf`: its IVF part, if any; `mapped`: with a hash map from
    label to list position)."""
    if ivf is None:
        return flat_or_graph_bytes(faiss.downcast_index(bulk)) if bulk.ntotal else 0
    total = ivf.ntotal * (ivf.invlists.code_size + 8)  # codes + int64 ids
    if mapped:
        total += ivf.ntotal * MAP_BYTES
    quantizer = faiss.downcast_index(ivf.quantizer)
    total += quantizer.ntotal * quantizer.d * 4  # coarse centroids
    if isinstance(quantizer, faiss.IndexHNSW):
        graph = quantizer.hnsw
        total += 4 * graph.neighbors.size() + 8 * graph.offsets.size()
    if isinstance(bulk, faiss.IndexPreTransform):
        total += bulk.d * bulk.d * 4  # an OPQ rotation
    return total


def flat_or_graph_bytes(index: faiss.Index) -> int:
    """Bytes of a flat-coded or HNSW index (others serialised to measure)."""
    if isinstance(index, faiss.IndexFlatCodes):
        return index.ntotal * index.code_size
    if isinstance(index, faiss.IndexHNSW):
        graph = index.hnsw
        links = 4 * graph.neighbors.size() + 8 * graph.offsets.size() + 4 * graph.levels.size()
        return links + flat_or_graph_bytes(faiss.downcast_index(index.storage))
    return faiss.serialize_index(index).nbytes
