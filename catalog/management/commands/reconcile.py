"""Compare each shard with the database, and find products whose encoding stalled; repair both."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from catalog.services.encode_leases import StuckProducts, products_resend_stuck
from catalog.services.reconcile import reconcile

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


class Command(BaseCommand):
    help = (
        "Find ids missing from or extra in each shard, and products stuck in encoding or "
        "pending; repair them unless --dry-run."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--timeout", type=float, default=120.0)
        parser.add_argument(
            "--pending-after",
            type=float,
            default=None,
            help="seconds a product may stay pending (default ENCODE_PENDING_AFTER_S)",
        )

    def handle(
        self,
        *args: object,
        dry_run: bool,
        timeout: float,
        pending_after: float | None,
        **options: object,
    ) -> None:
        pending_after_s = (
            settings.ENCODE_PENDING_AFTER_S if pending_after is None else pending_after
        )
        stuck = products_resend_stuck(pending_after_s=pending_after_s, dry_run=dry_run)
        for line in stuck_lines(stuck, dry_run=dry_run, pending_after_s=pending_after_s):
            self.stdout.write(line)
        diffs = reconcile(repair=not dry_run, timeout=timeout)
        if not diffs:
            self.stdout.write("nothing to reconcile: no encode worker has published a model yet")
        for d in diffs:
            action = "would repair" if dry_run else "repaired"
            self.stdout.write(
                f"shard {d.shard}: live {d.live}, expected {d.expected}; "
                f"{action} {d.missing} missing, {d.extra} extra"
            )
