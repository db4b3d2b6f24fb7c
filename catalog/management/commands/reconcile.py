"""Compare every replica of each shard with the database (ids and filter attributes), and
find products whose encoding stalled; repair both unless --dry-run."""

from __future__ import annotations

import json
from dataclasses import asdict

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.selectors import StuckInState
from catalog.services.encode_leases import StuckProducts, products_resend_stuck
from catalog.services.reconcile import (
    ReconcileReport,
    ReconcileRunning,
    ReplicaReport,
    ShardReport,
    reconcile_exclusive,
)

SHOWN_IDS = 20


def _ids(ids: list[int], total: int | None = None) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN_IDS])
    more = (len(ids) if total is None else total) - min(len(ids), SHOWN_IDS)
    return f"{shown} (+{more} more)" if more > 0 else shown


def stuck_lines(stuck: StuckProducts, *, dry_run: bool, pending_after_s: float) -> list[str]:
    """What the encoding sweep found (and, unless dry_run, re-sent)."""
    send = "would re-send" if dry_run else "re-sent"
    lines = [
        f"encoding: {stuck.encoding} product(s), {len(stuck.unleased)} with no live encode task"
        + (
            f" (longest wait since the last save {stuck.unleased_age_s:.0f}s): "
            f"{send} ids {_ids(stuck.unleased)}"
            if stuck.unleased
            else ""
        )
    ]
    line = f"pending for over {pending_after_s:.0f}s: {stuck.pending} product(s)"
    if stuck.pending:
        line += f" (longest wait since the last save {stuck.pending_age_s:.0f}s)"
        if stuck.pending_ids:
            line += f", ids {_ids(stuck.pending_ids, stuck.pending - len(stuck.retrying))}"
            if stuck.pending_resendable:
                line += f"; {send} them (no encode task is queued)"
            else:
                line += f"; left to the {stuck.queued_tasks} queued encode task(s)"
        if stuck.retrying:
            line += f"; ids {_ids(stuck.retrying)} wait for their task's scheduled retry"
    lines.append(line)
    return lines


def in_state_line(stuck: list[StuckInState], after_s: float) -> str:
    """Products left in an in-flight state for longer than `after_s`, per state."""
    parts = []
    for s in stuck:
        part = f"{s.state} {s.count}"
        if s.count:
            part += f" (longest {s.longest_s:.0f}s; ids {_ids(s.ids, s.count)})"
        parts.append(part)
    return f"in a state for over {after_s:.0f}s: " + ", ".join(parts)


def _differences(r: ReplicaReport | ShardReport) -> str:
    def kind(n: int, name: str, ids: list[int]) -> str:
        return f"{n} {name}" + (f" (ids {_ids(ids, n)})" if ids else "")

    if isinstance(r, ShardReport):
        return f"{r.missing} missing, {r.extra} extra, {r.stale} stale"
    return ", ".join(
        (
            kind(r.missing, "missing", r.missing_ids),
            kind(r.extra, "extra", r.extra_ids),
            kind(r.stale, "stale", r.stale_ids),
        )
    )


def shard_lines(shard: ShardReport, *, dry_run: bool) -> list[str]:
    answered = sum(1 for r in shard.replicas if r.answered)
    head = (
        f"shard {shard.shard}: expected {shard.expected}; "
        f"{answered} of {len(shard.replicas)} replica(s) answered; {_differences(shard)}"
    )
    if not shard.replicas:
        head += "; NO LIVE REPLICA"
    if shard.in_flight:
        head += f" ({shard.in_flight} more in flight: left to their update)"
    if shard.products_resent or shard.ids_deleted:
        head += "; would " if dry_run else "; "
        head += (
            f"re-send {shard.products_resent} product(s), delete {shard.ids_deleted} id(s)"
            if dry_run
            else f"re-sent {shard.products_resent} product(s), deleted {shard.ids_deleted} id(s)"
        )
    lines = [head]
    for r in shard.replicas:
        where = f"replica {r.name} on {r.host}"
        if not r.answered:
            said = "ready" if r.ready else f"not ready: {r.reason}"
            lines.append(f"  {where}: NOT ANSWERING (its heartbeat: {said}, at {r.position})")
        elif not r.compared:
            lines.append(f"  {where}: not ready ({r.reason}), not compared")
        else:
            state = "DIVERGED" if r.diverged else "ok"
            lines.append(
                f"  {where}: {state} at {r.position}, {r.rows} rows; {_differences(r)}"
                + (f"; {r.in_flight} in flight" if r.in_flight else "")
            )
    return lines


def report_lines(report: ReconcileReport) -> list[str]:
    dry_run = not report.repaired
    lines = [in_state_line(report.stuck, report.stuck_after_s)]
    if not report.model:
        lines.append("nothing to reconcile: no encode worker has published a model yet")
    for shard in report.shards:
        lines.extend(shard_lines(shard, dry_run=dry_run))
    if report.model:
        lines.append(f"compared in {report.seconds:.2f}s, {report.redis_bytes} digest bytes")
    return lines


class Command(BaseCommand):
    help = (
        "Compare every replica of each shard with the database: ids missing or extra, and "
        "ids whose filter attributes differ; list products stuck pending or encoding. "
        "Repairs unless --dry-run."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report, repair nothing")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print one JSON object"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds to wait for the replicas (default RECONCILE_TIMEOUT_S)",
        )
        parser.add_argument(
            "--pending-after",
            type=float,
            default=None,
            help="seconds a product may stay pending before it is re-sent "
            "(default ENCODE_PENDING_AFTER_S)",
        )
        parser.add_argument(
            "--stuck-after",
            type=float,
            default=None,
            help="report products in a state for longer (default RECONCILE_STUCK_AFTER_S)",
        )

    def handle(
        self,
        *args: object,
        dry_run: bool,
        as_json: bool,
        timeout: float | None,
        pending_after: float | None,
        stuck_after: float | None,
        **options: object,
    ) -> None:
        pending_after_s = (
            settings.ENCODE_PENDING_AFTER_S if pending_after is None else pending_after
        )
        # The sweep first: products it sends again are in flight for the comparison.
        sweep = products_resend_stuck(pending_after_s=pending_after_s, dry_run=dry_run)
        try:
            report = reconcile_exclusive(
                repair=not dry_run,
                timeout=settings.RECONCILE_TIMEOUT_S if timeout is None else timeout,
                stuck_after_s=stuck_after,
            )
        except ReconcileRunning as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            out = {"encode_sweep": asdict(sweep), **report.as_dict()}
            self.stdout.write(json.dumps(out, indent=2, sort_keys=True))
            return
        for line in stuck_lines(sweep, dry_run=dry_run, pending_after_s=pending_after_s):
            self.stdout.write(line)
        for line in report_lines(report):
            self.stdout.write(line)
