"""A shard state on disk: the backend's files, the columns (with the rows of fresh vectors
as ``delta_vectors``) and ``meta.json``, in an atomic checksummed snapshot directory
(`snapshot.py`). Format 1, as earlier versions wrote it: their snapshots still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from workers.index import snapshot as snap
from workers.index.backends import load_backend
from workers.index.columns import ALL_COLUMNS, Columns
from workers.index.spec import IndexSpec, SearchParams
from workers.index.state import ShardState

FORMAT = 1


def write(state: ShardState, directory: Path, meta: dict[str, object], log_position: str) -> Path:
    """Write `state` (the caller keeps it from changing) as the next snapshot under
    `directory`; `meta`: the shard's identity (model, dim, spec)."""
    temp, final = snap.new_temp_dir(Path(directory))
    known: dict[str, str] = {}
    saved = state.backend.save(temp)
    dim = int(meta["dim"])  # type: ignore[call-overload]
    delta = saved.pop("delta_vectors", np.zeros((0, dim), np.float32))
    arrays = {f"col_{n}": a for n, a in state.cols.to_arrays().items()}
    arrays["delta_vectors"] = np.asarray(delta, dtype=np.float32)
    np.savez(temp / "columns.npz", allow_pickle=False, **arrays)
    rerank = saved.get("rerank")
    if isinstance(rerank, dict):
        known[str(rerank["file"])] = str(rerank["sha256"])
    full = {
        "format": FORMAT,
        "log_position": log_position,
        **meta,
        "params": state.params.to_dict(),
        "tune": state.tune_report,
        "slots": state.cols.size,
        "vectors": int(state.cols["alive"].sum()),
        "rerank": None,
        "fresh_in_bulk": False,
        **saved,
    }
    json.dumps(full)  # fail before renaming if something is not serialisable
    return snap.commit(temp, final, full, known)


def read(path: Path, meta: dict, work_dir: Path) -> ShardState:
    """The state a snapshot folder holds (ValueError, KeyError, OSError or RuntimeError
    when it cannot be read)."""
    spec = IndexSpec.from_dict(meta["spec"])
    dim = int(meta["dim"])
    with np.load(path / "columns.npz", allow_pickle=False) as data:
        cols = Columns.from_arrays({n: data[f"col_{n}"] for n in ALL_COLUMNS})
        delta = np.ascontiguousarray(data["delta_vectors"], dtype=np.float32)
    if cols.size != int(meta["n_bulk"]) + len(delta):
        raise ValueError("snapshot columns and delta do not add up")
    backend = load_backend(path, meta, spec, dim, work_dir, cols["alive"], delta)
    params = SearchParams.from_dict(meta["params"])
    return ShardState.of(backend, cols, params, dict(meta.get("tune") or {}), 0)
