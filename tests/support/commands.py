"""The processes a deployment file starts (docker-compose.yml, deploy/k8s/): each must be an
entry point this code has, with queues it declares."""

from __future__ import annotations

import importlib

from workers.queues import Queue, shard_queue

KNOWN_QUEUES = {q.value for q in Queue} | {shard_queue(i) for i in range(64)}
CELERY_COMMANDS = {"worker", "beat", "flower"}


def option(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def check_command(command: list[str]) -> None:
    """Fail unless `command` is gunicorn on a WSGI app (and config module) that exists, a
    Celery command of the searchsite app on known queues, Flower through the service's
    logging (workers/observability/flower.py), or a real management command."""
    if command[0] == "gunicorn":
        module, attr = command[1].split(":") if ":" in command[1] else (command[1], "application")
        assert hasattr(importlib.import_module(module), attr), command
        config = option(command, "-c")
        if config:
            assert importlib.import_module(config.removeprefix("python:")), command
    elif command[0] == "celery":
        assert option(command, "-A") == "searchsite", command
        assert importlib.import_module("searchsite.celery").app
        assert command[3] in CELERY_COMMANDS, command
        queues = option(command, "-Q")
        if queues:
            assert set(queues.split(",")) <= KNOWN_QUEUES, queues
    elif command[:3] == ["python", "-m", "workers.observability.flower"]:
        assert importlib.import_module(command[2]).main, command
    elif command[:2] == ["python", "manage.py"]:
        from django.core.management import get_commands

        assert command[2] in get_commands(), command
    else:
        raise AssertionError(f"unrecognised command {command}")
