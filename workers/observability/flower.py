"""Flower with the service's logging: `python -m workers.observability.flower [options]`.

Flower's tornado gives the root logger a plain-text handler of its own unless one is
there already, so the same handlers as every other process (JSON lines with
LOG_FORMAT=json) are set up first; with JSON logs Celery prints no banner either.
The options are Flower's (`--address`, `--port`, ...), for the searchsite app.
"""

from __future__ import annotations

import logging.config
import sys

from workers.config import worker_config
from workers.observability.logs import logging_config


def main(argv: list[str]) -> None:
    logs = worker_config().observability
    fmt = logs.log_format
    logging.config.dictConfig(logging_config(fmt, logs.log_level))
    from celery.bin.celery import main as celery

    quiet = ["--quiet"] if fmt == "json" else []
    sys.argv = ["celery", "-A", "searchsite", *quiet, "flower", *argv]
    celery()


if __name__ == "__main__":
    main(sys.argv[1:])
