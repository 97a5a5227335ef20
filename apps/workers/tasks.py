"""Celery tasks for the fleet: thin wrappers over :mod:`apps.workers.health`.

No retries: the next sweep, ``PENDRA_HEALTH_INTERVAL`` seconds later, is the retry. The time
limits sit below the interval so a stuck sweep is killed before the next one is due.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from apps.workers import health

# Two probe timeouts (/health then /v1/models) plus database writes; never below what one sweep needs.
SWEEP_SOFT_LIMIT = max(settings.PENDRA_HEALTH_INTERVAL * 0.8, 2 * settings.PENDRA_HEALTH_TIMEOUT + 1)
SWEEP_HARD_LIMIT = SWEEP_SOFT_LIMIT + max(1.0, settings.PENDRA_HEALTH_INTERVAL * 0.15)


@shared_task(name="workers.health_sweep", soft_time_limit=SWEEP_SOFT_LIMIT, time_limit=SWEEP_HARD_LIMIT)
def health_sweep() -> dict[str, Any]:
    return health.health_sweep().as_dict()


@shared_task(name="workers.probe_worker", soft_time_limit=SWEEP_SOFT_LIMIT, time_limit=SWEEP_HARD_LIMIT)
def probe_worker(worker_id: str) -> str | None:
    worker = health.probe_worker(worker_id)
    return worker.state if worker is not None else None
