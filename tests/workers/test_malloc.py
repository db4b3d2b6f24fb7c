"""The malloc tuning applies on glibc and steps aside for the operator's own settings."""

import subprocess
import sys

CODE = "from workers.malloc import keep_freed_memory; print(keep_freed_memory())"


def run(env_extra: dict[str, str]) -> str:
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_applies_on_glibc_unless_the_operator_set_glibc_variables() -> None:
    import platform

    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert run({}) == expected
    assert run({"MALLOC_MMAP_THRESHOLD_": "1048576"}) == "False"
