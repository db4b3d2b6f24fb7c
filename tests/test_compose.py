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


def _users(command: list[str]) -> list[list[str]]:
    """The ACL rules of each `--user` option of a redis-server command line."""
    users, current = [], None
    for part in command:
        if part.startswith("--"):
            current = [] if part == "--user" else None
            if current is not None:
                users.append(current)
        elif current is not None:
            current.append(part)
    return users


def test_redis_wants_a_password_everywhere():
    redis_service = SERVICES["redis"]
    command = redis_service["command"]
    assert "--requirepass" not in command  # an ACL user instead of the default one
    default, app = _users(command)
    assert default == ["default", "off"]
    assert app[:3] == [
        "${REDIS_USERNAME:-vps}",
        "on",
        ">${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}",
    ]
    assert {"-@admin", "-flushall", "-flushdb"} <= set(app)
    url = COMPOSE["x-app"]["environment"]["REDIS_URL"]
    assert re.fullmatch(
        r"redis://\$\{REDIS_USERNAME:-vps\}:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/0", url
    )
    # The healthcheck authenticates (REDISCLI_AUTH, --user) and wants PONG, not just an exit code.
    assert redis_service["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "--user ${REDIS_USERNAME:-vps}" in " ".join(redis_service["healthcheck"]["test"])
    assert "PONG" in " ".join(redis_service["healthcheck"]["test"])


# --- what `docker compose` makes of the file with an .env (its variable substitution) ---

_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:[-?])([^}]*))?\}")


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's substitution: ${VAR}, ${VAR:-default}, ${VAR:?error} (unset or empty)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        value = env.get(name, "")
        if not value and op == ":?":
            raise ValueError(f"{name}: {arg}")
        return arg if not value and op == ":-" else value

    return _VARIABLE.sub(one, text).replace("$$", "$")


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_env_example_documents_every_variable_compose_reads():
    used = set(_VARIABLE.findall((ROOT / "docker-compose.yml").read_text()))
    assert {name for name, _, _ in used} == set(_env_example())
    assert _env_example()["REDIS_USERNAME"] == "vps"
    assert _env_example()["REDIS_PASSWORD"] == ""  # no default password: one must be made


def test_compose_refuses_to_start_without_a_redis_password():
    env = {**_env_example(), "SECRET_KEY": "k" * 50, "FLOWER_BASIC_AUTH": "admin:pw"}
    with pytest.raises(ValueError, match=r"REDIS_PASSWORD: set REDIS_PASSWORD in \.env"):
        _interpolate((ROOT / "docker-compose.yml").read_text(), env)


def test_every_service_uses_the_redis_password_from_env():
    from workers.rpc.redis_url import parse_redis_url

    env = {
        **_env_example(),
        "SECRET_KEY": "k" * 50,
        "FLOWER_BASIC_AUTH": "admin:pw",
        "REDIS_PASSWORD": "0f3c9a-pw",
    }
    compose = yaml.safe_load(_interpolate((ROOT / "docker-compose.yml").read_text(), env))
    services = compose["services"]
    _, app_user = _users(services["redis"]["command"])
    assert app_user[:3] == ["vps", "on", ">0f3c9a-pw"]
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "0f3c9a-pw"
    app_services = [n for n, s in services.items() if s.get("image") == COMPOSE["x-app"]["image"]]
    assert {"web", "migrate", "encode-worker", "beat", "flower"} <= set(app_services)
    for name in app_services:
        url = parse_redis_url(services[name]["environment"]["REDIS_URL"])
        assert (url.username, url.password, url.hosts) == ("vps", "0f3c9a-pw", (("redis", 6379),))


def test_the_web_healthcheck_asks_with_a_host_django_allows():
    """Django answers 400 to a Host outside ALLOWED_HOSTS: a healthcheck to 127.0.0.1 with
    the default `localhost` would never pass."""
    command = " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert "/api/health/" in command
    host = re.search(r"'Host': '([^']+)'", command)
    assert host, command
    default = COMPOSE["x-app"]["environment"]["ALLOWED_HOSTS"]
    assert host[1] in default.removeprefix("${ALLOWED_HOSTS:-").removesuffix("}").split(",")
