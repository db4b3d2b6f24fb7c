"""LOG_FORMAT=json for real: gunicorn, a Celery worker, beat and Flower, each in its own process,
write nothing but JSON objects, one a line, on stdout and stderr; one access line a
request with its id and its fields, and one `django.request` line per 4xx/5xx."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import ROOT, CeleryWorker, worker_env
from tests.support.wsgi_with_fault import FAULT
from workers.queues import Queue
from workers.redis_process import free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def json_lines(*texts: str) -> list[dict]:
    """Every line of `texts` as a JSON object; fails on the first line that is not one."""
    entries = []
    for text in texts:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}") from None
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


def get(port: int, path: str, request_id: str | None = None) -> int:
    headers = {"X-Request-ID": request_id} if request_id else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            get(port, "/api/health/")
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("gunicorn did not answer")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


REQUESTS = {  # request id: (path, status)
    "log-ok": ("/api/categories/", 200),
    "log-api-404": ("/api/products/987654/", 404),  # a DRF answer: logged after the chain
    "log-page-404": ("/no-such-page/?token=secret-1", 404),  # raised by the resolver
    "log-500": ("/api/search/?q=boom", 500),  # tests/support/wsgi_with_fault.py
}


def test_gunicorn_writes_json_lines_one_access_line_a_request(redis_url, tmp_path: Path):
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = worker_env(redis_url, LOG_FORMAT="json", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "m"))
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "tests.support.wsgi_with_fault:application",
        "-c",
        "python:workers.observability.gunicorn_hooks",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "2",
    ]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
        try:
            wait_listening(port, proc, err)
            for request_id, (path, status) in REQUESTS.items():
                assert get(port, path, request_id) == status, path
        finally:
            stop(proc)

    entries = json_lines(out.read_text(), err.read_text())
    gunicorn = [e["message"] for e in entries if e["logger"] == "gunicorn.error"]
    assert any(m.startswith("Listening at") for m in gunicorn), gunicorn
    assert any(m.startswith("Booting worker") for m in gunicorn), gunicorn
    assert not [e for e in entries if e["logger"] == "gunicorn.access"]

    access = [e for e in entries if e["logger"] == "searchsite.access"]
    for request_id, (path, status) in REQUESTS.items():
        [line] = [e for e in access if e["request_id"] == request_id]
        assert line["method"] == "GET"
        assert line["path"] == path.split("?")[0]
        assert line["status"] == status
        assert isinstance(line["duration_ms"], float)
    assert [e["query"] for e in access if e["request_id"] == "log-page-404"] == ["token=[redacted]"]
    assert "secret-1" not in out.read_text() + err.read_text()

    django = [e for e in entries if e["logger"] == "django.request"]
    assert sorted(e["request_id"] for e in django) == ["log-500", "log-api-404", "log-page-404"]
    [fault] = [e for e in entries if "exception" in e]
    assert fault["request_id"] == "log-500"
    assert f"RuntimeError: {FAULT}" in fault["exception"]


def test_a_celery_worker_and_beat_write_json_lines(redis_url, worker_logs, tmp_path: Path):
    """Beat sends the stale-encode sweep every second; the worker runs it; both stop."""
    env = {"LOG_FORMAT": "json", "ENCODE_STALE_EVERY_S": "1"}
    worker = CeleryWorker([Queue.DEFAULT.value], redis_url, worker_logs, **env).start()
    beat_log = tmp_path / "beat.log"
    try:
        argv = [sys.executable, "-m", "celery", "-A", "searchsite", "beat"]
        argv += ["--schedule", str(tmp_path / "schedule"), "--loglevel", "INFO"]
        with beat_log.open("wb") as log:
            beat = subprocess.Popen(
                argv, cwd=ROOT, env=worker_env(redis_url, **env), stdout=log, stderr=log
            )
            try:
                deadline = time.monotonic() + 60
                while "encode_stale" not in worker.log() or "succeeded" not in worker.log():
                    assert time.monotonic() < deadline, worker.log()[-2000:]
                    assert beat.poll() is None, beat_log.read_text()[-2000:]
                    time.sleep(0.3)
            finally:
                stop(beat)
    finally:
        worker.stop()

    worker_entries = json_lines(worker.log())
    messages = [e["message"] for e in worker_entries]
    assert any("consumes celery" in m for m in messages), messages
    assert any(m.endswith("ready.") for m in messages), messages
    assert any("encode_stale" in m and "succeeded" in m for m in messages), messages
    assert any(m.endswith("shut down") for m in messages), messages
    beat_entries = json_lines(beat_log.read_text())
    assert any("Sending due task encode-stale" in e["message"] for e in beat_entries)


def test_flower_writes_json_lines(redis_url, tmp_path: Path):
    """Flower, started as every deployment starts it, logs through the same handlers."""
    port = free_port()
    env = worker_env(
        redis_url,
        LOG_FORMAT="json",
        FLOWER_BASIC_AUTH="admin:flower-test-pw",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
    )
    (tmp_path / "prometheus").mkdir()
    argv = [sys.executable, "-m", "workers.observability.flower", "--address=127.0.0.1"]
    log_path = tmp_path / "flower.log"
    with log_path.open("wb") as log:
        flower = subprocess.Popen(
            [*argv, f"--port={port}"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            while not (_listening(port) and get(port, "/") == 401):  # it wants the password
                assert time.monotonic() < deadline, log_path.read_text()[-2000:]
                assert flower.poll() is None, log_path.read_text()[-2000:]
                time.sleep(0.3)
        finally:
            stop(flower)
    entries = json_lines(log_path.read_text())
    assert entries, "Flower logged nothing"
    messages = [e["message"] for e in entries]
    assert any(m.startswith("Connected to redis://:**@") for m in messages), messages


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
