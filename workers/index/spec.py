"""Which FAISS index a shard uses: the one place where `auto` is decided.

`auto` picks by vector count (n) and dimension:

=========================  ============================  =====================================
vectors in the shard       index (factory string)        why
=========================  ============================  =====================================
n < flat_max               ``Flat``                      exact, and a scan this small is as
                                                         cheap as any index's overhead
flat_max <= n < hnsw_max   ``HNSW32``                    a graph: fewest vectors scored for
                                                         0.95 recall; fresh vectors wait in an
                                                         exact delta folded in a chunk at a
                                                         time, removed ones are filtered out
                                                         until a compaction rebuilds the graph
hnsw_max <= n < ivfpq_min  ``IVF{nlist},Flat``           ~4*sqrt(n) lists, adds need no
                                                         retraining, ``remove_ids`` is cheap
                                                         where a graph rebuild would not be;
                                                         float32 in RAM
n >= ivfpq_min             ``OPQ{m},IVF{nlist},PQ{m}``   m bytes of code per vector, exact
                                                         re-rank of the top candidates from a
                                                         16-bit memory-mapped file on disk
=========================  ============================  =====================================

``flat_max``, ``hnsw_max`` and ``ivfpq_min`` are INDEX_FLAT_MAX, INDEX_HNSW_MAX and
INDEX_IVFPQ_MIN (workers/config/index.py); the figures behind them are in README ("Index
defaults", bench/pgvector_bench.py and bench/shards_bench.py). ``nlist`` is the power of two
nearest to ``4 * sqrt(n)``. From HNSW_QUANTIZER_NLIST lists on (about 4M vectors), the coarse
quantizer is an HNSW graph over the centroids (``IVF{nlist}_HNSW32``): assigning every vector
to its nearest of that many centroids by brute force is what makes a large build slow; the
graph does it approximately. Overrides: ``flat``, ``ivf``, ``hnsw`` (``HNSW32``), ``ivfpq``,
or any FAISS factory string (``"IVF1024,SQ8"``); factories containing PQ/SQ/LSH codes are
re-ranked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from workers.config import IndexConfig

HNSW_M = 32
PQ_BYTES = 32
HNSW_QUANTIZER_NLIST = 8192
DEFAULT_RERANK_K = 200
EF_SEARCH_MAX = 4096  # the deepest graph search a filter scales to
RERANK_K_MAX = 10_000  # the most candidates a deeper search re-ranks

_COMPRESSED = re.compile(r"(PQ|SQ|LSH|RaBitQ)", re.IGNORECASE)
_NLIST = re.compile(r"IVF(\d+)")


@dataclass(frozen=True)
class IndexSpec:
    """A FAISS factory string plus what the shard needs to know about it."""

    factory: str
    rerank: bool = False  # compressed codes: re-rank candidates exactly from the 16-bit file

    @cached_property  # asked by every search: parsed once
    def kind(self) -> str:
        """flat, ivf, hnsw or other: decides how params are passed and how compaction works."""
        if self.factory == "Flat":
            return "flat"
        if "IVF" in self.factory:
            return "ivf"
        if self.factory.startswith("HNSW"):
            return "hnsw"
        return "other"

    @cached_property
    def exact(self) -> bool:
        """A plain scan (`Flat`): every search scores every vector, so its results are the
        exact neighbours and it has no knob to tune."""
        return self.kind == "flat" and not self.rerank

    @cached_property
    def nlist(self) -> int | None:
        match = _NLIST.search(self.factory)
        return int(match.group(1)) if match else None

    def to_dict(self) -> dict[str, object]:
        return {"factory": self.factory, "rerank": self.rerank}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> IndexSpec:
        return cls(factory=str(data["factory"]), rerank=bool(data["rerank"]))

    @classmethod
    def from_factory(cls, factory: str) -> IndexSpec:
        return cls(factory=factory, rerank=bool(_COMPRESSED.search(factory)))


def nlist_for(n_vectors: int) -> int:
    """Power of two nearest to 4*sqrt(n), at least 1."""
    target = 4.0 * math.sqrt(max(n_vectors, 1))
    return max(1, 2 ** round(math.log2(target)))


def ivf_part(nlist: int) -> str:
    """The IVF term of a factory string: a graph coarse quantizer for many lists."""
    return f"IVF{nlist}_HNSW32" if nlist >= HNSW_QUANTIZER_NLIST else f"IVF{nlist}"


_DEFAULT_SIZES = IndexConfig()


def choose_spec(
    n_vectors: int, dim: int, override: str = "auto", sizes: IndexConfig = _DEFAULT_SIZES
) -> IndexSpec:
    """The index spec for a shard of `n_vectors` vectors of dimension `dim` (see module table);
    `auto` moves up at the configured `sizes` (flat_max, hnsw_max, ivfpq_min)."""
    name = (override or "auto").strip()
    key = name.lower()
    if key == "auto":
        if n_vectors < sizes.flat_max:
            key = "flat"
        elif n_vectors < sizes.hnsw_max:
            key = "hnsw"
        elif n_vectors < sizes.ivfpq_min:
            key = "ivf"
        else:
            key = "ivfpq"
    if key == "flat":
        return IndexSpec("Flat")
    if key == "ivf":
        return IndexSpec(f"{ivf_part(nlist_for(n_vectors))},Flat")
    if key == "hnsw":
        return IndexSpec(f"HNSW{HNSW_M}")
    if key == "ivfpq":
        m = PQ_BYTES if dim % PQ_BYTES == 0 else _largest_divisor(dim, PQ_BYTES)
        return IndexSpec(f"OPQ{m},{ivf_part(nlist_for(n_vectors))},PQ{m}", rerank=True)
    return IndexSpec.from_factory(name)


def _largest_divisor(dim: int, at_most: int) -> int:
    return max(m for m in range(1, at_most + 1) if dim % m == 0)


@dataclass(frozen=True, slots=True)
class SearchParams:
    """Per-request search knobs; None means the shard's tuned default."""

    nprobe: int | None = None
    ef_search: int | None = None
    rerank_k: int | None = None

    def merged_over(self, base: SearchParams) -> SearchParams:
        """These params with the gaps filled from `base` (self when it has none to fill: a
        new frozen instance costs a single query ~0.6 us)."""
        if (
            (self.nprobe is not None or base.nprobe is None)
            and (self.ef_search is not None or base.ef_search is None)
            and (self.rerank_k is not None or base.rerank_k is None)
        ):
            return self
        return SearchParams(
            nprobe=self.nprobe if self.nprobe is not None else base.nprobe,
            ef_search=self.ef_search if self.ef_search is not None else base.ef_search,
            rerank_k=self.rerank_k if self.rerank_k is not None else base.rerank_k,
        )

    def to_dict(self) -> dict[str, int | None]:
        return {"nprobe": self.nprobe, "ef_search": self.ef_search, "rerank_k": self.rerank_k}

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> SearchParams:
        data = data or {}

        def knob(key: str) -> int | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, int | float | str):
                raise ValueError(f"{key} must be a number, not {type(value).__name__}")
            return int(value)

        return cls(nprobe=knob("nprobe"), ef_search=knob("ef_search"), rerank_k=knob("rerank_k"))


def describe_knobs(factory: str, params: Mapping[str, object] | None) -> str:
    """A shard's search knobs as an operator reads them: "exact" for a flat scan, else
    "nprobe 16, efSearch -" (and ", re-rank 200" for a compressed index)."""
    spec = IndexSpec.from_factory(factory)
    if spec.exact:
        return "exact"
    given = params or {}

    def value(key: str) -> str:
        number = given.get(key)
        return "-" if number is None else str(int(number))  # type: ignore[call-overload]

    text = f"nprobe {value('nprobe')}, efSearch {value('ef_search')}"
    if spec.rerank or given.get("rerank_k") is not None:
        text += f", re-rank {value('rerank_k')}"
    return text


def default_params(spec: IndexSpec) -> SearchParams:
    """Search knobs of an untuned shard (a build's tuning replaces them)."""
    nlist = spec.nlist
    return SearchParams(
        nprobe=min(nlist, max(1, nlist // 64)) if nlist else None,
        ef_search=64 if spec.kind == "hnsw" else None,
        rerank_k=DEFAULT_RERANK_K if spec.rerank else None,
    )


def min_train(spec: IndexSpec) -> int:
    """Vectors needed before an untrained spec can be trained from a shard's delta."""
    need = 1
    if spec.nlist:
        need = max(need, 4 * spec.nlist)
    if spec.rerank:
        need = max(need, 1024)
    return need
