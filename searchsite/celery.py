"""The Celery app: configuration from Django settings (CELERY_*), tasks from workers.tasks."""

from __future__ import annotations

import os
from collections.abc import Iterable

from celery import Celery
from kombu.utils.objects import cached_property

import workers.observability.celery_worker  # noqa: F401  (metrics port, logging)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")


class SearchCelery(Celery):
    """Celery whose `worker` and `beat` programs print no banner when logs are JSON lines
    (workers/observability/celery_programs.py)."""

    @cached_property
    def Worker(self):
        return self.subclass_with_self("workers.observability.celery_programs:Worker")

    @cached_property
    def Beat(self):
        return self.subclass_with_self("workers.observability.celery_programs:Beat")


app = SearchCelery("searchsite")


def worker_argv(python: str, queues: Iterable[str], name: str, loglevel: str = "INFO") -> list[str]:
    """How `make run`, the tests and the benchmarks start a worker of this app.

    Solo pool: one process holds the CLIP model or the shard; no gossip or mingle chatter.
    """
    return [
        python,
        "-m",
        "celery",
        "-A",
        "searchsite",
        "worker",
        "-Q",
        ",".join(queues),
        "-n",
        name,
        "--pool",
        "solo",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
    ]


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


def _add_serving_steps() -> None:
    import workers.serving.control  # noqa: F401  (registers the workers' remote-control commands)
    from workers.serving.bootsteps import EncoderServing, ShardServing

    app.steps["worker"].add(ShardServing)
    app.steps["worker"].add(EncoderServing)


_add_serving_steps()
