"""Redis (cache, rate-limit counters) and Celery: the broker, its defaults and the periodic intervals."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from pendra_console.env import env_float, env_int
from pendra_console.settings.base import VAR_DIR

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured(f"REDIS_URL must be a redis://, rediss:// or unix:// URL, not {REDIS_URL!r}")

# Seconds: see CELERY_BROKER_TRANSPORT_OPTIONS. Tests shorten it to see a killed task delivered again.
CELERY_VISIBILITY_TIMEOUT = env_int("PENDRA_CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "pendra_console.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "pendra",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # A task not acknowledged within this many seconds is handed to another worker: it must
        # exceed the longest task (hard limits are at most a few minutes) and any ETA/countdown
        # (none: anything later is a row with a timestamp that a periodic task picks up).
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pendra"}}
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    _processed_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
        # Worker remote control (ping, inspect) uses a fanout exchange, kept in its own folder.
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# One queue per deployment; two deployments sharing a Redis (or two test runs) give theirs different names.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("PENDRA_CELERY_QUEUE", "celery")
# Defaults for any task that does not set its own (every Pendra task does).
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# Acknowledge on receipt unless a task opts in with acks_late=True after showing a rerun is harmless.
CELERY_TASK_ACKS_LATE = False
# A task whose worker process dies is acknowledged, not redelivered forever (a poison message
# would otherwise kill worker after worker); the periodic tasks simply run again on the next tick.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
# acks_late tasks still running when the broker connection drops are redelivered elsewhere, so
# stop them here instead of letting two copies run.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# How often beat sends each periodic task, in seconds. Every one is harmless when it runs
# twice or overlaps; tests shorten the intervals through the environment.
PENDRA_KEY_LIFECYCLE_INTERVAL = env_float("PENDRA_KEY_LIFECYCLE_INTERVAL", 60.0, minimum=0.5)
PENDRA_RETENTION_INTERVAL = env_float("PENDRA_RETENTION_INTERVAL", 3600.0, minimum=1.0)
