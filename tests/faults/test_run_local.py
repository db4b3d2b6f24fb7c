"""`make run` for real: run_local in a subprocess on free ports, with its own DATA_DIR.

One process of the local stack killed with SIGKILL comes back by itself while the
others keep running; slow clients cannot starve the web server; Redis and Flower
want credentials; SIGINT stops every process. The tests share one stack, in order.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from catalog.management.local_stack import supervisor_rpc
from tests.support.images import image_bytes
from workers.observability.multiproc import pids_in
from workers.redis_process import RedisProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
# Variables of this test session that must not leak into the stack: it has its own.
SESSION_ONLY = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "MEDIA_ROOT",
    "INDEX_DIR",
    "STATIC_ROOT",
    "PROMETHEUS_MULTIPROC_DIR",
    "FLOWER_BASIC_AUTH",
    "REDIS_PASSWORD",
)


@dataclass
class LocalStack:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    flower_port: int
    redis_port: int
    output: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.url(path), data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def search(self, k: int = 100) -> dict:
        status, body = self.request("GET", f"/api/search/?q=shoe+{uuid.uuid4().hex[:8]}&k={k}")
        assert status == 200, body
        return body

    def pids(self) -> dict[str, int]:
        """The pid of each supervised process that is running."""
        infos = supervisor_rpc(self.data_dir).supervisor.getAllProcessInfo()
        return {info["name"]: info["pid"] for info in infos if info["statename"] == "RUNNING"}

    def token(self) -> str:
        match = re.search(r"API token: (\w+)", self.output.read_text())
        assert match, self.output.read_text()
        return match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, AssertionError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


def whole(stack: LocalStack) -> bool:
    shards = stack.search()["shards"]
    return shards["answered"] == shards["total"]


def processes_with_data_dir(data_dir: Path) -> list[int]:
    """Pids of this user's processes whose environment names the stack's DATA_DIR."""
    marker = f"DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: it runs nothing and holds no port.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_clip_model: Path) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("run-local")
    data_dir = work / "data"
    env = {k: v for k, v in os.environ.items() if k not in SESSION_ONLY}
    env.update(
        DATA_DIR=str(data_dir),
        CLIP_MODEL=str(tiny_clip_model),
        PYTHONUNBUFFERED="1",
        THROTTLE_ANON="100000/minute",
        THROTTLE_USER="100000/minute",
        THROTTLE_SEARCH="100000/minute",
    )
    ports = [free_port() for _ in range(3)]
    output = work / "run_local.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "manage.py", "run_local", "--port", str(ports[0])),
                *("--flower-port", str(ports[1]), "--redis-port", str(ports[2])),
                *("--metrics-base-port", "0", "--demo-products", "6"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals here reach run_local only, as a test's should
            # as a script's background job starts it (`make run &`): SIGINT ignored, which
            # run_local must undo for Ctrl-C or a supervisor's SIGINT to stop it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    local = LocalStack(proc, data_dir, ports[0], ports[1], ports[2], output)
    try:
        wait_for(
            lambda: proc.poll() is None and whole(local), 240, "every shard to answer a search"
        )
        staff = {"Authorization": f"Token {local.token()}"}  # index states are staff-only
        wait_for(
            lambda: (
                local.request("GET", "/api/products/?index_state=pending", headers=staff)[1][
                    "count"
                ]
                == 0
            ),
            120,
            "the demo catalog to be indexed",
        )
        yield local
    except BaseException:
        print(output.read_text())
        raise
    finally:
        local.stop()
        for pid in processes_with_data_dir(data_dir):  # never leave a process behind
            os.kill(pid, signal.SIGKILL)


def test_session_redis_refuses_clients_without_password(redis_server: RedisProcess):
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis.Redis(port=redis_server.port, socket_timeout=2).ping()
    assert redis.Redis.from_url(redis_server.url, socket_timeout=2).ping()


def test_redis_and_flower_want_credentials(stack: LocalStack):
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis.Redis(port=stack.redis_port, socket_timeout=2).ping()
    password = (stack.data_dir / "secrets" / "redis-password").read_text().strip()
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):  # default user: off
        redis.Redis(port=stack.redis_port, password=password, socket_timeout=2).ping()
    app_user = redis.Redis(
        port=stack.redis_port, username="vps", password=password, socket_timeout=2
    )
    assert app_user.ping()
    for admin in (("CONFIG", "GET", "dir"), ("FLUSHALL",), ("SHUTDOWN",)):
        with pytest.raises(redis.ResponseError, match="no permissions"):
            app_user.execute_command(*admin)
    assert password not in stack.output.read_text()  # never printed, nor logged
    for log in (stack.data_dir / "logs").glob("*.log"):
        assert password not in log.read_text(errors="replace"), log.name

    flower = f"http://127.0.0.1:{stack.flower_port}/"  # the dashboard (its API wants auth anyway)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(flower, timeout=10)
    assert refused.value.code == 401
    auth = (stack.data_dir / "secrets" / "flower-basic-auth").read_text().strip()
    assert f"Flower login: {auth.replace(':', ' / ')}" in stack.output.read_text()
    request = urllib.request.Request(
        flower, headers={"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_commands_from_another_shell_join_the_stack(stack: LocalStack):
    """`manage.py index_status` with nothing in its environment but where stack.env is
    (STACK_ENV; DATA_DIR=<repo>/data finds it by default) reaches the stack's Redis."""
    env_file = stack.data_dir / "stack.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it holds the Redis password
    written = env_file.read_text()
    assert "REDIS_URL='redis://vps:" in written
    assert f"@127.0.0.1:{stack.redis_port}/0'" in written
    assert f"WEB_PORT='{stack.port}'" in written
    assert f"FLOWER_PORT='{stack.flower_port}'" in written
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "INDEX_STORE_URL", "DATABASE_URL"):
        assert f"\n{name}='" in written, name

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "index_status", "--json"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "STACK_ENV": str(env_file)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shards = json.loads(result.stdout)
    # The shard workers registered their replicas in the stack's Redis, nowhere else.
    assert [row["shard"] for row in shards] == [0, 1]
    assert all(row["ready_replicas"] >= 1 for row in shards), shards
    assert all(row["log"]["length"] > 0 for row in shards), shards
    password = (stack.data_dir / "secrets" / "redis-password").read_text().strip()
    assert password not in result.stdout + result.stderr
    print(f"index_status from another shell: {time.monotonic() - started:.1f}s")


def test_metrics_are_the_service_s_only(stack: LocalStack):
    """Flower writes its `flower_*` metrics to a directory of its own, not the host's:
    the web's /metrics serves this service's names only."""
    flower = stack.pids()["flower"]
    wait_for(
        lambda: flower in pids_in(stack.data_dir / "prometheus-flower"),
        60,
        "Flower's metrics (it counts the workers' events)",
    )
    assert flower not in pids_in(stack.data_dir / "prometheus")
    with urllib.request.urlopen(stack.url("/metrics"), timeout=30) as response:
        names = {f.name for f in text_string_to_metric_families(response.read().decode())}
    assert names, "no metrics"
    assert {name for name in names if not name.startswith("vps_")} == set()
    assert "vps_process_resident_memory_bytes" in names


def test_bodies_never_sent_do_not_starve_health(stack: LocalStack):
    """Slow clients announce an image search's body and never send it: the web server must
    not give each a thread (gunicorn's 8 threads did, and /api/health/ timed out)."""
    hanging = []
    try:
        for _ in range(16):
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
            sock.sendall(
                b"POST /api/search/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\n"
                b"Content-Length: 100000\r\n\r\n"
            )
            hanging.append(sock)
        time.sleep(1)  # let the server take them all
        started = time.monotonic()
        with urllib.request.urlopen(stack.url("/api/health/"), timeout=5) as response:
            assert response.status == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in hanging:
            sock.close()


def test_killed_shard_worker_comes_back_alone(stack: LocalStack):
    before = stack.pids()
    assert {"web", "redis", "encode", "index", "beat", "flower", "shard0", "shard1"} <= set(before)
    os.kill(before["shard0"], signal.SIGKILL)

    def partial() -> bool:
        shards = stack.search()["shards"]
        return shards["answered"] < shards["total"]

    wait_for(partial, 30, "a partial answer while shard 0 is down", interval=0.1)
    wait_for(
        lambda: stack.pids().get("shard0") not in (None, before["shard0"]) and whole(stack),
        180,
        "shard 0's worker to be restarted and answer",
    )
    after = stack.pids()
    assert {n: p for n, p in after.items() if n != "shard0"} == {
        n: p for n, p in before.items() if n != "shard0"
    }
    assert stack.proc.poll() is None


def test_killed_encode_worker_loses_no_update(stack: LocalStack):
    before = stack.pids()
    os.kill(before["encode"], signal.SIGKILL)
    auth = {"Authorization": f"Token {stack.token()}"}
    status, product = stack.request(
        "POST",
        "/api/products/",
        json.dumps({"sku": "KILL-ENC-1", "title": "Red shoe", "price": "10.00"}).encode(),
        {**auth, "Content-Type": "application/json"},
    )
    assert status == 201, product
    boundary = uuid.uuid4().hex
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            'filename="shoe.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + image_bytes("PNG", colour=(210, 20, 40))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, image = stack.request(
        "POST",
        f"/api/products/{product['id']}/images/",
        form,
        {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 201, image

    wait_for(
        lambda: (
            stack.request("GET", f"/api/products/{product['id']}/", headers=auth)[1]["index_state"]
            == "indexed"
        ),
        180,
        "the product to be indexed by the restarted encode worker",
    )
    wait_for(
        lambda: product["id"] in {hit["product"]["id"] for hit in stack.search()["results"]},
        60,
        "the product to be found",
    )
    after = stack.pids()
    assert after["encode"] != before["encode"]
    assert {n: p for n, p in after.items() if n != "encode"} == {
        n: p for n, p in before.items() if n != "encode"
    }


def test_sigint_stops_every_process_despite_a_second_signal(stack: LocalStack):
    """Ctrl-C, then SIGTERM while the programs are stopping (an impatient user, or a
    `timeout` around `make run`): the stop still finishes and cleans up."""
    programs = stack.pids()
    pids = set(programs.values())
    pids.add(int((stack.data_dir / "supervisord.pid").read_text()))
    assert processes_with_data_dir(stack.data_dir)
    stack.proc.send_signal(signal.SIGINT)
    wait_for(lambda: not alive(programs["shard0"]), 60, "the stop to begin")
    assert alive(programs["redis"])  # stopped last: the stop is still under way
    stack.proc.send_signal(signal.SIGTERM)
    stack.proc.wait(timeout=120)
    wait_for(lambda: not any(alive(pid) for pid in pids), 10, "every process to exit")
    assert [pid for pid in processes_with_data_dir(stack.data_dir) if alive(pid)] == []
    assert not (stack.data_dir / "stack.env").exists()  # other shells no longer join it
