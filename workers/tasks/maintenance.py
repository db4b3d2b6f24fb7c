"""Tasks of the `index` queue: building shard indexes, and deciding when to.

A fresh install starts with exact flat shards; `maybe_rebuild` (Celery beat) moves a
shard to a trained index once its vector count calls for another kind (see
workers/index/spec.py: flat below INDEX_FLAT_MAX = 10k vectors, an HNSW graph below
INDEX_HNSW_MAX = 50k, IVF above, OPQ+IVF+PQ from INDEX_IVFPQ_MIN = 2M).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from catalog.services import index_builds
from workers.index.spec import IndexSpec, choose_spec
from workers.queues import Queue, shard_queue

logger = logging.getLogger(__name__)


@shared_task(
    name="workers.tasks.maintenance.build_index",
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 300,
)
def build_index(shard: int | None = None, spec: str | None = None) -> list[dict[str, object]]:
    """Rebuild one shard (or all) from the embedding table and publish it. Idempotent."""
    shards = range(settings.SEARCH_SHARDS) if shard is None else [int(shard)]
    return [index_builds.build_shard(n, spec=spec) for n in shards]


@shared_task(name="workers.tasks.maintenance.maybe_rebuild", soft_time_limit=120)
def maybe_rebuild() -> dict[int, str]:
    """Queue a rebuild for every shard whose size calls for another index kind."""
    from workers.tasks.shards import shard_stats

    decisions: dict[int, str] = {}
    for n in range(settings.SEARCH_SHARDS):
        try:
            stats = shard_stats.apply_async(args=[n], queue=shard_queue(n), expires=30).get(
                timeout=30, disable_sync_subtasks=False
            )
        except Exception as exc:  # a shard that cannot answer (timeout, error) is skipped, loudly
            logger.warning("maybe_rebuild: shard %d did not report: %s", n, exc)
            decisions[n] = f"no report: {exc}"
            continue
        current = str(stats["spec"])
        wanted = rebuild_target(current, int(stats["vectors"]), int(stats["dim"]))
        if wanted is not None:
            build_index.apply_async(args=[n], queue=Queue.INDEX.value)
            decisions[n] = f"rebuild {current} -> {wanted.factory}"
        else:
            decisions[n] = f"keep {current}"
    return decisions


def rebuild_target(current: str, n_vectors: int, dim: int) -> IndexSpec | None:
    """The spec to rebuild to, or None while the current index still fits the shard.

    Another kind (flat -> IVF), compression switched on (IVF -> OPQ+IVF+PQ), or an IVF
    whose list count is 4x too small for the vectors it now holds.
    """
    if settings.INDEX_SPEC.strip().lower() not in {"auto", ""}:
        return None  # a fixed factory string is rebuilt by hand only
    wanted = choose_spec(n_vectors, dim, "auto", settings.WORKER_CONFIG.index)
    have = IndexSpec.from_factory(current)
    if wanted.kind != have.kind or wanted.rerank != have.rerank:
        return wanted
    if wanted.nlist and have.nlist and wanted.nlist >= 4 * have.nlist:
        return wanted
    return None


@shared_task(name="workers.tasks.maintenance.recall_probe", soft_time_limit=1800)
def recall_probe(n_queries: int | None = None) -> dict[str, object]:
    """Measure recall@10 of the live service against exact neighbours, and store it."""
    from catalog.services.recall import run_probe

    result = run_probe(n_queries)
    if result is None:
        return {"skipped": "nothing indexed yet"}
    return {
        "recall_at_10": result.recall,
        "per_shard": result.per_shard,
        "queries": result.queries,
        "partial": result.partial,
    }


@shared_task(
    name="workers.tasks.maintenance.reconcile_shards", soft_time_limit=1800, time_limit=1830
)
def reconcile_shards() -> dict[str, object]:
    """Compare every live replica's ids and filter attributes with the database and repair
    what differs; report products stuck in flight. Skipped while another reconcile runs
    (a Redis lock). Idempotent."""
    from catalog.services.reconcile import ReconcileRunning, reconcile_exclusive

    try:
        report = reconcile_exclusive(timeout=settings.RECONCILE_TIMEOUT_S)
    except ReconcileRunning as exc:
        logger.info("reconcile skipped: %s", exc)
        return {"skipped": str(exc)}
    for stuck in report.stuck:
        if stuck.count:
            logger.warning(
                "reconcile: %d product(s) %s for over %.0fs (longest %.0fs), ids %s",
                stuck.count,
                stuck.state,
                report.stuck_after_s,
                stuck.longest_s,
                stuck.ids,
            )
    return report.as_dict()
