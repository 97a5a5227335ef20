"""Celery tasks for the fleet: thin wrappers over :mod:`apps.workers.health`.

No retries: the next sweep, ``PENDRA_HEALTH_INTERVAL`` seconds later, is the retry. The time
limits sit below the interval so a stuck sweep is killed before the next one is due.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import shared_task  # type: ignore[import-untyped]  # celery ships no type information
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import RedisError

from apps.workers import health

logger = logging.getLogger("pendra.workers")

# Two probe timeouts (/health then /v1/models) plus database writes; never below what one sweep needs.
SWEEP_SOFT_LIMIT = max(settings.PENDRA_HEALTH_INTERVAL * 0.8, 2 * settings.PENDRA_HEALTH_TIMEOUT + 1)
SWEEP_HARD_LIMIT = SWEEP_SOFT_LIMIT + max(1.0, settings.PENDRA_HEALTH_INTERVAL * 0.15)


@shared_task(  # type: ignore[untyped-decorator]
    name="workers.health_sweep", soft_time_limit=SWEEP_SOFT_LIMIT, time_limit=SWEEP_HARD_LIMIT
)
def health_sweep() -> dict[str, Any]:
    return health.health_sweep().as_dict()


@shared_task(  # type: ignore[untyped-decorator]
    name="workers.probe_worker", soft_time_limit=SWEEP_SOFT_LIMIT, time_limit=SWEEP_HARD_LIMIT
)
def probe_worker(worker_id: str) -> str | None:
    worker = health.probe_worker(worker_id)
    return worker.state if worker is not None else None


def probe_soon(worker_id: str) -> None:
    """Have a Celery worker probe ``worker_id`` once the current transaction commits.

    The registration stands even when the broker (Redis) is unreachable: the next health
    sweep probes the worker anyway, so a failed hand-off is logged rather than turned into a 500.
    """
    transaction.on_commit(functools.partial(_send_probe, worker_id))


def _send_probe(worker_id: str) -> None:
    try:
        probe_worker.delay(worker_id)
    except (BrokerOperationalError, RedisError, OSError) as exc:
        logger.warning("could not send the first probe of worker %s (%s); the next sweep probes it", worker_id, exc)
