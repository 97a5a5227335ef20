"""The Celery app: configured from Django settings (CELERY_*), tasks in apps/*/tasks.py.

Task outcomes and run times are counted for Prometheus through Celery's signals; with
``PENDRA_CELERY_METRICS_PORT`` set, a worker serves them on that port (its pool processes
count together in ``PROMETHEUS_MULTIPROC_DIR``).
"""

import os
import time
from typing import Any

from celery import Celery, signals  # type: ignore[import-untyped]  # celery ships no type information

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pendra_console.settings")

app = Celery("pendra_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_started: dict[str, float] = {}


def _task_started(task_id: str, **kwargs: Any) -> None:
    _started[task_id] = time.perf_counter()


def _task_finished(task_id: str, task: Any, state: str | None = None, **kwargs: Any) -> None:
    from pendra_console.metrics import CELERY_TASK_SECONDS, CELERY_TASKS

    started = _started.pop(task_id, None)
    CELERY_TASKS.labels(task.name, (state or "unknown").lower()).inc()
    if started is not None:
        CELERY_TASK_SECONDS.labels(task.name).observe(time.perf_counter() - started)


def _serve_metrics(**kwargs: Any) -> None:
    port = os.environ.get("PENDRA_CELERY_METRICS_PORT", "").strip()
    if port:
        from prometheus_client import start_http_server

        from pendra_console.metrics import scrape_registry

        start_http_server(int(port), registry=scrape_registry())


# Connected by call, not as decorators: celery is untyped, and a decorator from it would make
# these functions untyped too.
signals.task_prerun.connect(_task_started)
signals.task_postrun.connect(_task_finished)
signals.worker_ready.connect(_serve_metrics)
