"""`make run`'s process table (catalog/management/local_stack.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings

from catalog.management.local_stack import local_processes, supervisord_config


def test_flower_keeps_its_metrics_out_of_the_host_s_directory(tmp_path: Path) -> None:
    """Flower defines prometheus metrics of its own (`flower_*`): written to the host's
    directory, the web's /metrics served them summed with the service's."""
    programs = local_processes(sys.executable, 2, 8000, 5555)
    flower_dir = programs["flower"].env["PROMETHEUS_MULTIPROC_DIR"]
    assert Path(flower_dir) != Path(settings.PROMETHEUS_MULTIPROC_DIR)
    assert Path(flower_dir).parent == Path(settings.DATA_DIR)
    assert all(
        "PROMETHEUS_MULTIPROC_DIR" not in program.env
        for name, program in programs.items()
        if name != "flower"
    )
    config = supervisord_config(tmp_path, programs)
    assert f'PROMETHEUS_MULTIPROC_DIR="{flower_dir}"' in config
