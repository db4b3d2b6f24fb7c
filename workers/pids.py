"""Process ids of this host: whether one is alive, and how a child is stopped.

Shared by a replica's clean-up of dead replicas' work folders, `make run`'s stack file
and the Redis servers the project starts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True for a running process (anyone's); a zombie counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)


def terminate(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once it is reaped."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
