"""Running the real import_catalog command and reading its report."""

from __future__ import annotations

import io
from pathlib import Path

from django.core.management import call_command


def run_import(path: Path, *extra: str) -> tuple[str, dict[int, str]]:
    """The command's output and its rejects by line (the command must not raise)."""
    out = io.StringIO()
    call_command("import_catalog", str(path), *extra, stdout=out, verbosity=0)
    text = out.getvalue()
    rejects = {}
    for row in text.splitlines():
        if row.startswith("  line "):
            line, reason = row.removeprefix("  line ").split(": ", 1)
            rejects[int(line)] = reason
    return text, rejects
