"""docker-compose.yml cannot be started here (no container engine): keep it honest by reading it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from workers.queues import Queue, shard_queue

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _option(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def test_all_roles_present():
    assert {"redis", "postgres", "web", "encode-worker", "beat", "flower"} <= set(SERVICES)
    assert any(name.startswith("search-shard-") for name in SERVICES)
    assert "--appendonly" in SERVICES["redis"]["command"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_commands_name_real_modules_and_queues(name):
    command = SERVICES[name].get("command")
    if command is None or SERVICES[name].get("image", "").startswith(("redis", "postgres")):
        return
    if command[0] == "gunicorn":
        module, attr = command[1].split(":") if ":" in command[1] else (command[1], "application")
        assert hasattr(importlib.import_module(module), attr)
        config = _option(command, "-c")
        if config:
            assert importlib.import_module(config.removeprefix("python:"))
    elif command[0] == "celery":
        assert _option(command, "-A") == "searchsite"
        assert importlib.import_module("searchsite.celery").app
        queues = _option(command, "-Q")
        if queues:
            known = {q.value for q in Queue} | {shard_queue(i) for i in range(64)}
            assert set(queues.split(",")) <= known, queues
    elif command[:2] == ["python", "manage.py"]:
        from django.core.management import get_commands

        assert command[2] in get_commands()
    else:
        pytest.fail(f"{name}: unrecognised command {command}")


def test_gpu_reservation_on_encode_worker():
    devices = SERVICES["encode-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_every_shard_has_a_search_worker():
    from django.conf import settings

    shard_queues = {
        _option(s["command"], "-Q") for n, s in SERVICES.items() if n.startswith("search-shard-")
    }
    assert shard_queues == {shard_queue(i) for i in range(settings.SEARCH_SHARDS)}
