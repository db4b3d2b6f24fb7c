"""`data/stack.env`: how to reach the stack `make run` is running, for other shells.

run_local writes it (mode 0600: it holds the Redis password) when it starts and removes
it when it stops; settings.py reads it first, so `manage.py index_status` or an extra
worker started from another shell joins that stack instead of the defaults
(127.0.0.1:6379). Variables set in the environment win over the file. STACK_ENV names
another file; set to an empty string it turns the file off. A file left by a run that
is gone (its STACK_PID is not running) is ignored, with a note on stderr.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import environ

from workers.pids import process_alive

FILE_NAME = "stack.env"
_PID = re.compile(r"^STACK_PID='?(\d+)'?$", re.MULTILINE)


def stack_env_path(base_dir: Path) -> Path | None:
    """$STACK_ENV, else $DATA_DIR/stack.env (DATA_DIR defaulting to <repo>/data); None: off."""
    configured = os.environ.get("STACK_ENV")
    if configured is not None:
        return Path(configured) if configured else None
    return Path(os.environ.get("DATA_DIR") or base_dir / "data") / FILE_NAME


def read_stack_env(path: Path | None) -> bool:
    """Put the file's variables into os.environ where unset; False when there is none to read."""
    if path is None:
        return False
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    pid = _PID.search(text)
    if pid and not process_alive(int(pid.group(1))):
        sys.stderr.write(f"note: ignoring {path}: the `make run` that wrote it is gone\n")
        return False
    environ.Env.read_env(str(path), overwrite=False)
    return True


def write_stack_env(path: Path, values: Mapping[str, str], header: str) -> None:
    """Write `values` (with this process as STACK_PID) to `path`, readable by its owner only."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in {**values, "STACK_PID": str(os.getpid())}.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key) or "'" in value or "\n" in value:
            raise ValueError(f"cannot write {key} to {path}")
        lines.append(f"{key}='{value}'")  # single quotes: read back verbatim
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def remove_stack_env(path: Path) -> None:
    """Remove the file if this process wrote it (another run may have taken it over)."""
    try:
        mine = (pid := _PID.search(path.read_text())) and int(pid.group(1)) == os.getpid()
    except FileNotFoundError:
        return
    if mine:
        path.unlink(missing_ok=True)
