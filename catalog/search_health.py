"""What the admin's Search health page shows: live shard state and recent recall/latency."""

from __future__ import annotations

import base64
import io
from typing import Any

from django.conf import settings
from django.utils import timezone

from catalog.health import workers_by_queue
from catalog.models import RecallMeasurement
from workers.index.spec import describe_knobs
from workers.queues import shard_queue


def shard_rows(timeout: float = 3.0) -> list[dict[str, Any]]:
    from workers.tasks.shards import shard_stats

    queues = workers_by_queue(timeout=1.0).get("queues", {})
    pending = {
        n: shard_stats.apply_async(args=[n], queue=shard_queue(n), expires=timeout)
        for n in range(settings.SEARCH_SHARDS)
    }
    rows = []
    for n, result in pending.items():
        row: dict[str, Any] = {"shard": n, "replicas": queues.get(shard_queue(n), [])}
        try:
            stats = result.get(timeout=timeout)
        except Exception as exc:  # a shard that does not answer is shown as such
            row["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            row.update(stats)  # incl. the replica's own update lag and snapshot age
            row["knobs"] = describe_knobs(str(stats.get("spec", "")), stats.get("params"))
        rows.append(row)
    return rows


def replica_rows() -> list[dict[str, Any]]:
    """Every live replica of every shard, ready or why not (from their heartbeats)."""
    from catalog.services.index_overview import overview

    rows = []
    for shard in overview():
        if "error" in shard:
            rows.append({"shard": shard["shard"], "error": shard["error"]})
            continue
        if not shard["replicas"]:
            rows.append({"shard": shard["shard"], "error": "no live replica: searches skip it"})
        rows.extend({"shard": shard["shard"], **member} for member in shard["replicas"])
    return rows


def _chart(series: dict[str, list[tuple]], ylabel: str, title: str) -> str | None:
    """A small PNG line chart as a data URI (rendered server-side; no JavaScript)."""
    if not any(series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6), dpi=100)
    for label, points in series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=".", label=label)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def history_charts(days: int = 7) -> dict[str, str | None]:
    since = timezone.now() - timezone.timedelta(days=days)
    rows = list(RecallMeasurement.objects.filter(measured_at__gte=since).order_by("measured_at"))
    recall: dict[str, list[tuple]] = {"all shards": []}
    latency: dict[str, list[tuple]] = {"p50": [], "p99": []}
    for row in rows:
        label = "all shards" if row.shard is None else f"shard {row.shard}"
        recall.setdefault(label, []).append((row.measured_at, row.recall_at_10))
        if row.shard is None and row.latency_p50_ms is not None:
            latency["p50"].append((row.measured_at, row.latency_p50_ms))
            latency["p99"].append((row.measured_at, row.latency_p99_ms))
    return {
        "recall": _chart(recall, "recall@10", f"Recall probe, last {days} days"),
        "latency": _chart(latency, "ms", "Search latency of the probe queries"),
        "latest": rows[-1] if rows else None,
    }
