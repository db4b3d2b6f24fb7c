"""Production safety comes from the environment: checked in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_secret_key_in_production_fails_at_boot_with_a_clear_message():
    result = _manage("check", DEBUG="false", ALLOWED_HOSTS="search.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_check_deploy_passes_with_a_production_environment(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY="x7Qp2-" * 12,
        ALLOWED_HOSTS="search.example.com",
        DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _setting(name: str, **env: str) -> str:
    code = f"from django.conf import settings; print(repr(settings.{name}))"
    result = _manage("shell", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]  # after the shell's import notice


def test_forwarded_proto_is_trusted_only_behind_a_proxy():
    assert _setting("SECURE_PROXY_SSL_HEADER", TRUSTED_PROXIES="0") == "None"
    behind = _setting("SECURE_PROXY_SSL_HEADER", TRUSTED_PROXIES="1")
    assert behind == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_reconcile_runs_every_five_minutes_unless_told_otherwise():
    entry = "CELERY_BEAT_SCHEDULE['reconcile']"
    default = _setting(entry)
    assert "'schedule': 300.0" in default
    assert "'expires': 300.0" in default  # a run that waited a whole period is dropped
    assert "'schedule': 60.0" in _setting(entry, RECONCILE_EVERY_S="60")
    assert _setting("RECONCILE_STUCK_AFTER_S") == "900.0"


def test_a_sentinel_redis_url_configures_celery_and_the_cache_through_sentinel():
    url = "redis+sentinel://vps:pw@s1:26379,s2:26380/search/1?sentinel_password=sp"
    code = (
        "from django.conf import settings as s; "
        "print(repr((s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT_OPTIONS, "
        "s.CELERY_RESULT_BACKEND, s.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS, "
        "s.CACHES['default']['LOCATION'], s.CACHES['default']['OPTIONS']['pool_class'])))"
    )
    result = _manage("shell", "-c", code, REDIS_URL=url)
    assert result.returncode == 0, result.stderr
    broker, broker_options, backend, backend_options, location, pool = eval(  # noqa: S307
        result.stdout.strip().splitlines()[-1]
    )
    assert broker == backend == "sentinel://vps:pw@s1:26379/1;sentinel://vps:pw@s2:26380/1"
    assert broker_options["master_name"] == backend_options["master_name"] == "search"
    assert broker_options["sentinel_kwargs"]["password"] == "sp"
    assert broker_options["visibility_timeout"] == 1800  # the project's options stay
    assert location == [url]
    assert pool == "workers.rpc.redis_url.UrlConnectionPool"


def test_a_malformed_redis_url_fails_at_boot_naming_the_setting_not_the_password():
    result = _manage("check", REDIS_URL="redis+sentinel://:hunter2@s1:26379,s2:x/search")
    assert result.returncode != 0
    assert "REDIS_URL: sentinel address 's2:x': the port must be a number" in result.stderr
    assert "hunter2" not in result.stderr

    result = _manage("check", CELERY_BROKER_URL="redis+sentinel://:hunter2@s1:26379")
    assert "CELERY_BROKER_URL: a Sentinel URL names the master" in result.stderr
    assert "hunter2" not in result.stderr


def test_replica_acknowledgement_settings_are_checked():
    result = _manage("check", REDIS_MIN_REPLICAS_ACK="-1")
    assert result.returncode != 0
    assert "REDIS_MIN_REPLICAS_ACK must be 0 or more" in result.stderr
