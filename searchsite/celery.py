"""The Celery app: configuration from Django settings (CELERY_*), tasks from workers.tasks."""

from __future__ import annotations

import os

from celery import Celery

import workers.observability.celery_worker  # noqa: F401  (metrics port, request ids in logs)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")

app = Celery("searchsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


def _add_serving_steps() -> None:
    from workers.serving.bootsteps import EncoderServing, ShardServing

    app.steps["worker"].add(ShardServing)
    app.steps["worker"].add(EncoderServing)


_add_serving_steps()
