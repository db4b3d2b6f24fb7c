"""docker-compose.yml cannot be started here (no container engine): keep it honest by reading it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.commands import check_command, option
from workers.queues import shard_queue

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_all_roles_present():
    assert {"redis", "postgres", "web", "encode-worker", "beat", "flower"} <= set(SERVICES)
    assert any(name.startswith("search-shard-") for name in SERVICES)
    assert "--appendonly" in SERVICES["redis"]["command"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_commands_name_real_modules_and_queues(name):
    command = SERVICES[name].get("command")
    if command is None or SERVICES[name].get("image", "").startswith(("redis", "postgres")):
        return
    check_command(command)


def test_gpu_reservation_on_encode_worker():
    devices = SERVICES["encode-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_every_shard_has_a_search_worker():
    from django.conf import settings

    shard_queues = {
        option(s["command"], "-Q") for n, s in SERVICES.items() if n.startswith("search-shard-")
    }
    assert shard_queues == {shard_queue(i) for i in range(settings.SEARCH_SHARDS)}


def _nginx_conf() -> str:
    nginx = SERVICES["nginx"]
    assert nginx["image"].startswith("nginx")
    mount = next(v for v in nginx["volumes"] if v.endswith(":/etc/nginx/conf.d/default.conf:ro"))
    return (ROOT / mount.split(":")[0]).read_text()


def test_nginx_alone_is_published_and_buffers_requests_for_gunicorn():
    """gunicorn gives each connection a thread: a slow body must stop at nginx."""
    from django.conf import settings

    assert "ports" not in SERVICES["web"]
    assert SERVICES["nginx"]["ports"] == ["8000:80"]
    conf = _nginx_conf()
    assert re.search(r"server web:8000;", conf)
    assert "proxy_pass http://app;" in conf
    assert "proxy_request_buffering on;" in conf
    for timeout in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert re.search(rf"^\s*{timeout} \d+s;", conf, re.M), timeout
    size = int(re.search(r"client_max_body_size (\d+)m;", conf).group(1)) * 2**20
    assert size > max(settings.IMAGE_MAX_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    assert COMPOSE["x-app"]["environment"]["TRUSTED_PROXIES"] == "1"


def test_no_process_writes_an_access_log_of_its_own():
    """The application logs each request (its middleware); gunicorn must not log it again."""
    for name, service in SERVICES.items():
        assert "--access-logfile" not in (service.get("command") or []), name


def test_flower_wants_basic_auth_and_listens_on_localhost_only():
    flower = SERVICES["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert not any("basic-auth" in part for part in flower["command"])  # never in `ps`
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    # The flower service keeps every other variable of the app.
    assert flower["environment"]["REDIS_URL"] == COMPOSE["x-app"]["environment"]["REDIS_URL"]


def test_redis_wants_a_password_everywhere():
    redis_service = SERVICES["redis"]
    command = redis_service["command"]
    assert option(command, "--requirepass").startswith("${REDIS_PASSWORD:?")
    url = COMPOSE["x-app"]["environment"]["REDIS_URL"]
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/0", url)
    # The healthcheck authenticates (REDISCLI_AUTH) and wants PONG, not just an exit code.
    assert redis_service["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "PONG" in " ".join(redis_service["healthcheck"]["test"])
