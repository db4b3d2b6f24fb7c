"""Build the tiny random CLIP used offline (tests, the demo without model weights)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from workers.encoding.tiny_clip import build_tiny_clip


class Command(BaseCommand):
    help = "Save a tiny randomly initialised CLIP (model, tokenizer, processor) to DIR."

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: object, directory: Path, seed: int, **options: object) -> None:
        path = build_tiny_clip(directory, seed=seed)
        self.stdout.write(f"tiny CLIP saved to {path}; load it with CLIP_MODEL={path}")
