"""The Celery app: configured from Django settings (CELERY_*), tasks in apps/*/tasks.py."""

import os

from celery import Celery  # type: ignore[import-untyped]  # celery ships no type information

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pendra_console.settings")

app = Celery("pendra_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
