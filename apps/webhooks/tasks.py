"""Celery tasks for webhooks: thin wrappers over :mod:`apps.webhooks.services`.

``deliver`` makes one attempt and, when it failed and attempts are left, queues the next
one with an exponential countdown (``PENDRA_WEBHOOK_RETRY_BASE_SECONDS`` doubling, capped at
``PENDRA_WEBHOOK_RETRY_MAX_SECONDS``, both far below the broker's visibility timeout).
Running it twice is harmless: the attempt is claimed by a conditional update first.
``send_stale`` (beat, every minute) re-queues deliveries whose message was lost.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.webhooks import services

# One attempt's HTTP timeout plus the database writes around it.
DELIVER_SOFT_LIMIT = settings.PENDRA_WEBHOOK_TIMEOUT + 15
DELIVER_HARD_LIMIT = DELIVER_SOFT_LIMIT + 15


@shared_task(name="webhooks.deliver", soft_time_limit=DELIVER_SOFT_LIMIT, time_limit=DELIVER_HARD_LIMIT)
def deliver(delivery_id: str) -> float | None:
    delay = services.attempt_delivery(delivery_id=delivery_id)
    if delay is not None:
        services.queue_later(delivery_id=delivery_id, countdown=delay)
    return delay


@shared_task(name="webhooks.send_stale", soft_time_limit=45, time_limit=60)
def send_stale() -> int:
    return services.send_stale()
