"""`make run`: the whole service on one machine, on embedded defaults.

Starts supervisord (catalog/management/local_stack.py) with a private Redis (an ACL
user with a password), prepares the database, the admin user, the model and the demo
catalog, then has supervisord start the web server, the Celery workers, beat and
Flower. A process that dies is restarted; Ctrl-C (or SIGTERM) stops everything.
While it runs, DATA_DIR/stack.env says how to reach the stack (searchsite/stack_env.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from catalog.management.local_stack import (
    Program,
    flower_metrics_dir,
    local_processes,
    new_password,
    stored_secret,
    supervisor_rpc,
    supervisord_config,
    worker_metrics_ports,
    write_private,
)
from catalog.model_in_use import ModelInUse, model_in_use
from catalog.models import Product
from searchsite.stack_env import FILE_NAME, remove_stack_env, write_stack_env
from workers.encoding.registry import MODEL_KEY
from workers.observability.multiproc import remove_dead_files
from workers.redis_process import RedisProcess
from workers.rpc.connection import connect

FLOWER_USER = "admin"
REDIS_USER = "vps"
STACK_ENV_HEADER = """Written by `make run` (manage.py run_local) while it runs, removed when it
stops. manage.py commands and workers started from another shell read it (settings.py),
so they join this stack; variables set in their environment win. STACK_ENV= ignores it."""

MODEL_WAIT_S = 120.0  # loading the real ViT-B/32 on a slow CPU takes a while


def model_lines(model: ModelInUse, configured: str) -> list[tuple[bool, str]]:
    """The banner's lines about the CLIP model: (is a warning, text)."""
    if model.source != "encoder":
        return [
            (
                True,
                f"  {'CLIP model':<12} not loaded yet (CLIP_MODEL={configured}); "
                "/api/health/ names it once the encode worker has loaded it",
            ),
        ]
    lines = [(False, f"  {'CLIP model':<12} {model.name} (dim {model.dim})")]
    if model.warning:
        lines += [
            (True, f"  WARNING: {model.warning}."),
            (
                True,
                f"  (CLIP_MODEL={configured}) For real search, download a checkpoint and "
                'point CLIP_MODEL at it: README.md, "A real CLIP model".',
            ),
        ]
    return lines


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        redis_server = self._redis(data_dir, redis_port)
        flower_auth, flower_new = self._flower_auth(data_dir)
        environment = self._environment(redis_server.url, flower_port, flower_auth)
        os.environ.update(environment)

        programs = {"redis": Program(redis_server.argv(), priority=1)}
        programs.update(
            local_processes(
                sys.executable, settings.SEARCH_SHARDS, port, flower_port, metrics_base_port
            )
        )
        config = data_dir / "supervisord.conf"
        write_private(config, supervisord_config(data_dir, programs))
        # Ctrl-C reaches supervisord too (same terminal); SIGTERM to this command is forwarded.
        # SIGINT is set here as well: a shell starting a job in the background has it
        # ignored, and Python then leaves it ignored, so a SIGINT would do nothing.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, _interrupt)
        supervisord = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(config)]
        )
        # Other shells join this stack through it; removed below whatever ends the run.
        stack_env = data_dir / FILE_NAME
        write_stack_env(
            stack_env, self._stack_values(environment, port, flower_port), STACK_ENV_HEADER
        )
        try:
            redis_server.wait_ready(timeout=30)
            self._prepare(redis_server.url, demo_products)
            for metrics_dir in (Path(settings.PROMETHEUS_MULTIPROC_DIR), flower_metrics_dir()):
                metrics_dir.mkdir(parents=True, exist_ok=True)
                remove_dead_files(metrics_dir)  # a fresh run starts its counters from zero
            rpc = supervisor_rpc(data_dir)
            for name in programs:
                if name != "redis":
                    rpc.supervisor.startProcess(name, False)
            model = self._wait_for_model(redis_server.url, supervisord)
            self._banner(
                port,
                flower_port,
                worker_metrics_ports(settings.SEARCH_SHARDS, metrics_base_port),
                flower_auth if flower_new else None,
                config,
                model,
            )
            supervisord.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(supervisord)
            remove_stack_env(stack_env)
        sys.exit(supervisord.returncode or 0)

    def _redis(self, data_dir: Path, redis_port: int) -> RedisProcess:
        """The private Redis: ACL user `vps` (REDIS_USERNAME overrides) with the password kept
        in DATA_DIR (REDIS_PASSWORD overrides); the default user is off."""
        password = (
            os.environ.get("REDIS_PASSWORD")
            or stored_secret(data_dir / "secrets" / "redis-password", new_password)[0]
        )
        username = os.environ.get("REDIS_USERNAME") or REDIS_USER
        server = RedisProcess(
            data_dir / "redis", port=redis_port, password=password, username=username
        )
        server.write_config()
        return server

    def _flower_auth(self, data_dir: Path) -> tuple[str, bool]:
        """Flower's `user:password` (FLOWER_BASIC_AUTH overrides), made once and kept."""
        if os.environ.get("FLOWER_BASIC_AUTH"):
            return os.environ["FLOWER_BASIC_AUTH"], False
        return stored_secret(
            data_dir / "secrets" / "flower-basic-auth", lambda: f"{FLOWER_USER}:{new_password()}"
        )

    def _stop(self, supervisord: subprocess.Popen[bytes]) -> None:
        """Have supervisord stop every program (whole process groups), then wait for it."""
        # A second Ctrl-C or SIGTERM must not cut the stop short: it would orphan the
        # programs and leave stack.env behind for other shells to join.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        if supervisord.poll() is None:
            supervisord.terminate()
        try:
            supervisord.wait(timeout=120)
        except subprocess.TimeoutExpired:
            supervisord.kill()
            supervisord.wait()

    def _environment(self, redis_url: str, flower_port: int, flower_auth: str) -> dict[str, str]:
        model = os.environ.get("CLIP_MODEL", settings.CLIP_MODEL)
        return {
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
            "DATA_DIR": str(settings.DATA_DIR),
            "CLIP_MODEL": model,
            "FLOWER_URL": f"http://127.0.0.1:{flower_port}/",
            "FLOWER_BASIC_AUTH": flower_auth,
            "PYTHONUNBUFFERED": "1",
        }

    def _stack_values(
        self, environment: dict[str, str], port: int, flower_port: int
    ) -> dict[str, str]:
        """What another shell needs to join this stack (written to DATA_DIR/stack.env)."""
        database = settings.DATABASES["default"]
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{database['NAME']}"
        names = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATA_DIR")
        return {
            **{name: environment[name] for name in names},
            "DATABASE_URL": database_url,
            "INDEX_STORE_URL": str(settings.INDEX_STORE_URL),
            "SEARCH_SHARDS": str(settings.SEARCH_SHARDS),
            "CLIP_MODEL": environment["CLIP_MODEL"],
            "WEB_PORT": str(port),
            "WEB_URL": f"http://127.0.0.1:{port}/",
            "FLOWER_PORT": str(flower_port),
            "FLOWER_URL": environment["FLOWER_URL"],
        }

    def _prepare(self, redis_url: str, demo_products: int) -> None:
        settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = redis_url
        settings.CACHES["default"]["LOCATION"] = [redis_url]
        from searchsite.celery import app

        app.conf.broker_url = app.conf.result_backend = redis_url
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin")
        if demo_products and not Product.objects.exists():
            call_command("make_demo_catalog", n=demo_products)
        client = connect(redis_url)
        try:
            # Redis keeps its data between runs: the banner must name this run's model.
            client.delete(MODEL_KEY)
        finally:
            client.close()

    def _wait_for_model(self, redis_url: str, supervisord: subprocess.Popen[bytes]) -> ModelInUse:
        """The model the encode worker loaded (it may be the offline fallback), or the
        configured one when it has not said within MODEL_WAIT_S."""
        self.stdout.write("waiting for the encode worker to load the CLIP model ...")
        client = connect(redis_url)
        deadline = time.monotonic() + MODEL_WAIT_S
        try:
            while True:
                model = model_in_use(client)
                if model.source == "encoder":
                    return model
                if time.monotonic() > deadline or supervisord.poll() is not None:
                    return model
                time.sleep(0.5)
        finally:
            client.close()

    def _banner(
        self,
        port: int,
        flower_port: int,
        metrics_ports: dict[str, int],
        new_flower_auth: str | None,
        config: Path,
        model: ModelInUse,
    ) -> None:
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
        for warning, line in model_lines(model, settings.CLIP_MODEL):
            self.stdout.write(self.style.WARNING(line) if warning else line)
        for name, metrics_port in metrics_ports.items():
            self.stdout.write(f"  {name + ' metrics':<20} http://127.0.0.1:{metrics_port}/metrics")
        if new_flower_auth:
            user, password = new_flower_auth.split(":", 1)
            self.stdout.write(
                self.style.WARNING(f"  Flower login: {user} / {password}   (shown once)")
            )
        else:
            self.stdout.write(
                f"  Flower login: kept in {Path(settings.DATA_DIR) / 'secrets'} "
                "(or FLOWER_BASIC_AUTH)"
            )
        self.stdout.write(f"  logs         {Path(settings.DATA_DIR) / 'logs'}/<process>.log")
        self.stdout.write(
            f"  stack.env    {Path(settings.DATA_DIR) / FILE_NAME} "
            "(manage.py commands from other shells join this stack)"
        )
        self.stdout.write(
            f"  processes    {sys.executable} -m supervisor.supervisorctl -c {config} status"
        )
        self.stdout.write("Ctrl-C stops everything.\n")
