"""Print every shard's replicas (ready or why not), update log and store artifacts."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from catalog.services.index_overview import overview

REPLICA_COLUMNS = ("shard", "replica", "host", "ready", "vectors", "build", "position", "reason")


class Command(BaseCommand):
    help = "Per shard: its live replicas, the update log and the artifacts in the store."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON document")

    def handle(self, *args: object, as_json: bool = False, **options: object) -> None:
        rows = overview()
        if as_json:
            self.stdout.write(json.dumps(rows, indent=1, sort_keys=True))
            return
        table = [REPLICA_COLUMNS]
        for row in rows:
            if "error" in row:
                table.append((str(row["shard"]), "-", "-", "-", "-", "-", "-", row["error"]))
                continue
            if not row["replicas"]:
                table.append((str(row["shard"]), "-", "-", "no", "0", "-", "-", "no live replica"))
            for m in row["replicas"]:
                table.append(
                    (
                        str(row["shard"]),
                        m["name"],
                        m["host"],
                        "yes" if m["ready"] else "no",
                        str(int(m["vectors"])),
                        m["build_id"] or "-",
                        m["position"] or "-",
                        m["reason"] or ("building" if m["role"] == "build" else ""),
                    )
                )
        self._table(table)
        self.stdout.write("")
        logs = [("shard", "log entries", "first", "last", "trim floor", "store", "newest artifact")]
        for row in rows:
            if "error" in row:
                continue
            log, store = row["log"], row["store"]
            logs.append(
                (
                    str(row["shard"]),
                    str(int(log["length"])),
                    log["first"] or "-",
                    log["last"],
                    log["trim_floor"] or "-",
                    f"{store['artifacts']} ({store['build_id']})",
                    store["newest"] or row.get("store_error", "-"),
                )
            )
        self._table(logs)

    def _table(self, rows: list[tuple[str, ...]]) -> None:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
