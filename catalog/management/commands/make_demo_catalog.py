"""Generate a demo catalog (products with category-specific images) and import it."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from catalog.demo import demo_rows, write_jsonl


class Command(BaseCommand):
    help = (
        "Write N demo products with generated images to IMPORT_ROOT/demo (or --out) "
        "and import them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--n", type=int, default=400)
        parser.add_argument("--out", type=Path, default=None)

    def handle(self, *args: object, n: int, out: Path | None, **options: object) -> None:
        out = (out or Path(settings.IMPORT_ROOT) / "demo").resolve()
        out.mkdir(parents=True, exist_ok=True)
        manifest = out / "catalog.jsonl"
        count = write_jsonl(demo_rows(n, out / "images"), manifest)
        self.stdout.write(f"wrote {count} demo products to {manifest}")
        # The images were written under `out`: that is where the import may read them.
        call_command(
            "import_catalog",
            str(manifest),
            image_root=out,
            stdout=self.stdout,
            verbosity=options["verbosity"],
        )
