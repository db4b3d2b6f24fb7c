"""The local deployment behind `make run`: its process table, supervisord's config, its secrets.

supervisord (from the `supervisor` package) runs every process: it restarts one
that died (with its backoff), keeps the others running, and stops them all, whole
process groups, on Ctrl-C. Each program writes to DATA_DIR/logs/<name>.log;
supervisord's own state changes (spawned, exited, gave up) go to the terminal.
"""

from __future__ import annotations

import os
import secrets
import shlex
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from searchsite.celery import worker_argv
from workers.queues import Queue, shard_queue

ROOT = Path(__file__).resolve().parents[2]
WEB_THREADS = 8
WEB_CHANNEL_TIMEOUT_S = 30  # waitress closes a connection idle this long


@dataclass(frozen=True)
class Program:
    """One supervised process: its command line and the variables it adds to the environment."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    priority: int = 100  # supervisord starts low numbers first and stops them last


def worker_metrics_ports(shards: int, base_port: int) -> dict[str, int]:
    """A Prometheus port per Celery worker (WORKER_METRICS_PORT); 0 turns them off."""
    if not base_port:
        return {}
    ports = {"encode": base_port + 1, "index": base_port + 2}
    ports.update({f"shard{shard}": base_port + 10 + shard for shard in range(shards)})
    return ports


def flower_metrics_dir() -> Path:
    """Flower's prometheus_client directory, apart from the host's (PROMETHEUS_MULTIPROC_DIR)."""
    return Path(settings.DATA_DIR) / "prometheus-flower"


def web_argv(python: str, port: int) -> list[str]:
    """waitress, not gunicorn: its asyncore channels buffer each request whole, so a client
    that announces a body and never sends it holds a socket, never a worker thread."""
    max_body = max(settings.IMAGE_MAX_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE) + 2**20
    return [
        python,
        "-m",
        "waitress",
        f"--listen=127.0.0.1:{port}",
        f"--threads={WEB_THREADS}",
        f"--channel-timeout={WEB_CHANNEL_TIMEOUT_S}",
        f"--max-request-body-size={max_body}",
        "--ident=visual-product-search",
        "searchsite.wsgi:application",
    ]


def local_processes(
    python: str, shards: int, web_port: int, flower_port: int, metrics_base_port: int = 0
) -> dict[str, Program]:
    """The process table of a local deployment (one search worker per shard)."""
    celery = [python, "-m", "celery", "-A", "searchsite"]
    schedule = str(settings.DATA_DIR / "celerybeat-schedule")
    processes = {
        "web": Program(web_argv(python, web_port)),
        "encode": Program(worker_argv(python, [Queue.ENCODE, Queue.DEFAULT], "encode@%h")),
        "index": Program(worker_argv(python, [Queue.INDEX], "index@%h")),
        "beat": Program([*celery, "beat", "--schedule", schedule, "--loglevel", "INFO"]),
        # Credentials come from FLOWER_BASIC_AUTH in the environment, never the command line.
        # Flower's own metrics (`flower_*`, on its port) go to a directory of their own: in
        # the host's, the web's /metrics summed them with ours.
        "flower": Program(
            [
                python,
                "-m",
                "workers.observability.flower",
                "--address=127.0.0.1",
                f"--port={flower_port}",
            ],
            {"PROMETHEUS_MULTIPROC_DIR": str(flower_metrics_dir())},
            priority=200,
        ),
    }
    for shard in range(shards):
        processes[f"shard{shard}"] = Program(
            worker_argv(python, [shard_queue(shard)], f"shard{shard}@%h")
        )
    for name, port in worker_metrics_ports(shards, metrics_base_port).items():
        processes[name] = Program(processes[name].argv, {"WORKER_METRICS_PORT": str(port)})
    return processes


def _escape(value: str) -> str:
    """supervisord expands %(name)s in its config: a literal % is written %%."""
    return value.replace("%", "%%")


def supervisor_socket(data_dir: Path) -> Path:
    return data_dir / "supervisor.sock"


def supervisord_config(data_dir: Path, programs: Mapping[str, Program]) -> str:
    """supervisord.conf for these programs; each inherits supervisord's environment.

    autorestart brings back a process that died; one that keeps dying within
    `startsecs` is retried `startretries` times with a growing delay (1 s, 2 s, ...),
    then left FATAL and logged. stopasgroup/killasgroup reach each program's children.
    """
    logs = data_dir / "logs"
    sections = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={_escape(str(logs / 'supervisord.log'))}",
        f"pidfile={_escape(str(data_dir / 'supervisord.pid'))}",
        f"childlogdir={_escape(str(logs))}",
        "loglevel=info",
        "",
        "[unix_http_server]",
        f"file={_escape(str(supervisor_socket(data_dir)))}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_escape(str(supervisor_socket(data_dir)))}",
        "",
    ]
    for name, program in programs.items():
        sections += [
            f"[program:{name}]",
            f"command={_escape(shlex.join(str(arg) for arg in program.argv))}",
            f"directory={_escape(str(ROOT))}",
            f"priority={program.priority}",
            # Redis starts with supervisord; run_local starts the rest once the database is ready.
            f"autostart={'true' if name == 'redis' else 'false'}",
            "autorestart=true",
            "startsecs=1",
            "startretries=10",
            "stopsignal=TERM",
            "stopwaitsecs=20",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_escape(str(logs / f'{name}.log'))}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=3",
        ]
        if program.env:
            pairs = ",".join(f'{key}="{_escape(value)}"' for key, value in program.env.items())
            sections.append(f"environment={pairs}")
        sections.append("")
    return "\n".join(sections)


def supervisor_rpc(data_dir: Path) -> xmlrpc.client.ServerProxy:
    """An XML-RPC client of the running supervisord (what supervisorctl uses)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{supervisor_socket(data_dir)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (secrets, configs that name them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def stored_secret(path: Path, make: Callable[[], str]) -> tuple[str, bool]:
    """The secret kept in `path`, made (and kept) the first time; True when just made."""
    if path.is_file():
        return path.read_text().strip(), False
    value = make()
    write_private(path, value + "\n")
    return value, True


def new_password() -> str:
    return secrets.token_urlsafe(18)
