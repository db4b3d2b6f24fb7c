"""Import products from JSON Lines or CSV, upserting by sku."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.services.import_files import read_rows
from catalog.services.imports import import_rows


class Command(BaseCommand):
    help = (
        "Upsert products and images from a .jsonl or .csv file; encoding is queued in chunks. "
        "Local image paths are read only under the import root."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--chunk-size", type=int, default=100)
        parser.add_argument(
            "--image-root",
            type=Path,
            default=None,
            help="folder local image paths must lie under; relative ones are taken from it "
            "(default: the IMPORT_ROOT setting)",
        )

    def handle(
        self,
        *args: object,
        file: Path,
        chunk_size: int,
        image_root: Path | None,
        **options: object,
    ) -> None:
        if not file.is_file():
            raise CommandError(f"no such file: {file}")
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        root = image_root or Path(settings.IMPORT_ROOT)
        with tqdm(desc="import", unit="row", disable=options["verbosity"] == 0) as bar:
            report = import_rows(
                read_rows(file), chunk_size=chunk_size, image_root=root, on_row=bar.update
            )
        self.stdout.write(
            f"created {report.created}, updated {report.updated}, "
            f"unchanged {report.unchanged}, rejected {report.rejected_count}"
        )
        for line, reason in report.rejected[:50]:
            self.stdout.write(self.style.WARNING(f"  line {line}: {reason}"))
        if report.rejected_count > 50:
            self.stdout.write(f"  ... and {report.rejected_count - 50} more")
        if any("import root" in reason for _, reason in report.rejected):
            self.stdout.write(f"  (the import root is {root})")
