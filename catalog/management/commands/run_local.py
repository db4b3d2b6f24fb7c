"""`make run`: the whole service on one machine, on embedded defaults.

Starts a private Redis, prepares the database, the admin user, the model and the
demo catalog, then runs the web server, the Celery workers, beat and Flower
under honcho until Ctrl-C, which stops everything it started.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from honcho.manager import Manager

from catalog.models import Product
from searchsite.celery import worker_argv
from workers.observability.multiproc import remove_dead_files
from workers.queues import Queue, shard_queue
from workers.redis_process import RedisProcess


def worker_metrics_ports(shards: int, base_port: int) -> dict[str, int]:
    """A Prometheus port per Celery worker (WORKER_METRICS_PORT); 0 turns them off."""
    if not base_port:
        return {}
    ports = {"encode": base_port + 1, "index": base_port + 2}
    ports.update({f"shard{shard}": base_port + 10 + shard for shard in range(shards)})
    return ports


def local_processes(
    python: str, shards: int, web_port: int, flower_port: int, metrics_base_port: int = 0
) -> dict[str, str]:
    """The process table of a local deployment (one search worker per shard)."""
    celery = f"{python} -m celery -A searchsite"
    schedule = settings.DATA_DIR / "celerybeat-schedule"
    processes = {
        "web": f"{python} -m gunicorn searchsite.wsgi --bind 127.0.0.1:{web_port} "
        "-c python:workers.observability.gunicorn_hooks "
        f"--workers 2 --threads 4 --timeout 60 --access-logfile -",
        "encode": shlex.join(worker_argv(python, [Queue.ENCODE, Queue.DEFAULT], "encode@%h")),
        "index": shlex.join(worker_argv(python, [Queue.INDEX], "index@%h")),
        "beat": f"{celery} beat --schedule {schedule} --loglevel INFO",
        "flower": f"{celery} flower --address=127.0.0.1 --port={flower_port}",
    }
    for shard in range(shards):
        processes[f"shard{shard}"] = shlex.join(
            worker_argv(python, [shard_queue(shard)], f"shard{shard}@%h")
        )
    for name, port in worker_metrics_ports(shards, metrics_base_port).items():
        processes[name] = f"WORKER_METRICS_PORT={port} {processes[name]}"
    return processes


class Command(BaseCommand):
    help = "Run the whole service locally (private Redis, SQLite, all workers) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--flower-port", type=int, default=5555)
        parser.add_argument(
            "--redis-port", type=int, default=int(os.environ.get("REDIS_PORT", 6390))
        )
        parser.add_argument("--demo-products", type=int, default=400)
        parser.add_argument(
            "--metrics-base-port",
            type=int,
            default=int(os.environ.get("WORKER_METRICS_BASE_PORT", 9100)),
            help="workers serve Prometheus metrics on ports from here (+1, +2, +10+shard); 0: off",
        )

    def handle(
        self,
        *args: object,
        port: int,
        flower_port: int,
        redis_port: int,
        demo_products: int,
        metrics_base_port: int,
        **options: object,
    ) -> None:
        data_dir = Path(settings.DATA_DIR)
        data_dir.mkdir(parents=True, exist_ok=True)
        redis_server = RedisProcess(data_dir / "redis", port=redis_port)
        redis_server.start()
        env = self._environment(redis_server.url, flower_port)
        os.environ.update(env)
        try:
            self._prepare(redis_server.url, demo_products)
            metrics_dir = Path(settings.PROMETHEUS_MULTIPROC_DIR)
            metrics_dir.mkdir(parents=True, exist_ok=True)
            remove_dead_files(metrics_dir)  # a fresh run starts its counters from zero
            manager = Manager()
            for name, command in local_processes(
                sys.executable, settings.SEARCH_SHARDS, port, flower_port, metrics_base_port
            ).items():
                manager.add_process(name, command, env={**os.environ, **env})
            self._banner(
                port, flower_port, worker_metrics_ports(settings.SEARCH_SHARDS, metrics_base_port)
            )
            manager.loop()
        finally:
            redis_server.stop()
        sys.exit(manager.returncode)

    def _environment(self, redis_url: str, flower_port: int) -> dict[str, str]:
        model = os.environ.get("CLIP_MODEL", settings.CLIP_MODEL)
        return {
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
            "DATA_DIR": str(settings.DATA_DIR),
            "CLIP_MODEL": model,
            "FLOWER_URL": f"http://127.0.0.1:{flower_port}/",
            "PYTHONUNBUFFERED": "1",
        }

    def _prepare(self, redis_url: str, demo_products: int) -> None:
        settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = redis_url
        settings.CACHES["default"]["LOCATION"] = redis_url
        from searchsite.celery import app

        app.conf.broker_url = app.conf.result_backend = redis_url
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin")
        if demo_products and not Product.objects.exists():
            call_command("make_demo_catalog", n=demo_products)

    def _banner(self, port: int, flower_port: int, metrics_ports: dict[str, int]) -> None:
        site = f"http://127.0.0.1:{port}"
        self.stdout.write(self.style.SUCCESS("\nVisual product search is starting:"))
        for label, url in (
            ("search page", f"{site}/"),
            ("admin", f"{site}/admin/"),
            ("API docs", f"{site}/api/docs/"),
            ("health", f"{site}/api/health/"),
            ("Flower", f"http://127.0.0.1:{flower_port}/"),
            ("metrics", f"{site}/metrics (all processes of this host)"),
        ):
            self.stdout.write(f"  {label:<12} {url}")
        for name, metrics_port in metrics_ports.items():
            self.stdout.write(f"  {name + ' metrics':<20} http://127.0.0.1:{metrics_port}/metrics")
        self.stdout.write("Ctrl-C stops everything.\n")
