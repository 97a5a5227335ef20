"""Every change to webhooks: endpoints, events, deliveries and their attempts.

:func:`emit_event` is what other apps call (budgets, keys, workers): it records the event
and one delivery per subscribed endpoint in the caller's transaction, and hands the
deliveries to Celery once that transaction commits, so a rolled-back change sends nothing.
A delivery that Celery never got (broker down) is picked up by the periodic
``webhooks.send_stale`` task. Sending the same delivery twice at once is harmless: each
attempt first claims the delivery with a conditional update and only the claimer sends.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import RedisError

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.orgs.models import Organisation
from apps.webhooks import signing
from apps.webhooks.models import Attempt, Delivery, DeliveryState, Endpoint, Event, EventType
from apps.webhooks.sending import Outcome, post_signed
from apps.workers.validation import WorkerUrlError, validate_worker_url
from pendra_console.api.exceptions import ValidationError
from pendra_console.celery import app as celery_app

logger = logging.getLogger("pendra.webhooks")

MAX_ENDPOINTS_PER_ORG = 20
DELIVER_TASK = "webhooks.deliver"


def clean_url(raw: str) -> str:
    """The workers' SSRF rules, and HTTPS unless private URLs are allowed (dev and tests' loopback receivers)."""
    allow_private = settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS
    try:
        url = validate_worker_url(raw, allow_private=allow_private, label="Webhook URL")
    except WorkerUrlError as exc:
        raise ValidationError({"url": str(exc)}) from None
    if not url.startswith("https://") and not allow_private:
        raise ValidationError({"url": "Webhook URL must use https://."})
    return url


def clean_events(events: list[str]) -> list[str]:
    known = set(EventType.values)
    unknown = sorted(set(events) - known)
    if unknown:
        raise ValidationError(
            {"events": f"Unknown event types: {', '.join(unknown)}; known: {', '.join(sorted(known))}."}
        )
    if not events:
        raise ValidationError({"events": "Subscribe to at least one event type."})
    return sorted(set(events))


@transaction.atomic
def endpoint_create(*, org: Organisation, actor: Any, url: str, events: list[str], description: str = "") -> Endpoint:
    """A new endpoint with a fresh secret (returned on the row: the caller shows it once)."""
    url, events = clean_url(url), clean_events(events)
    Organisation.objects.select_for_update().filter(pk=org.pk).first()  # serialise the count below
    if Endpoint.objects.filter(org=org).count() >= MAX_ENDPOINTS_PER_ORG:
        raise ValidationError({"url": f"An organisation may register at most {MAX_ENDPOINTS_PER_ORG} endpoints."})
    endpoint = Endpoint.objects.create(
        org=org,
        url=url,
        events=events,
        description=description.strip(),
        secret=signing.new_secret(),
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    # The audit names the endpoint by what the owner sees (URL, events); the secret never enters it.
    audit(actor, AuditEvent.Type.WEBHOOK_CREATED, endpoint, data={"url": url, "events": events})
    return endpoint


@transaction.atomic
def endpoint_update(*, endpoint: Endpoint, actor: Any, **fields: Any) -> Endpoint:
    """Change the URL, events, description or ``active``; audited only when something changed."""
    if "url" in fields:
        fields["url"] = clean_url(fields["url"])
    if "events" in fields:
        fields["events"] = clean_events(fields["events"])
    if "description" in fields:
        fields["description"] = fields["description"].strip()
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        if getattr(endpoint, name) != value:
            changes[name] = {"from": getattr(endpoint, name), "to": value}
            setattr(endpoint, name, value)
    if changes:
        endpoint.save(update_fields=list(changes))
        audit(actor, AuditEvent.Type.WEBHOOK_CHANGED, endpoint, data={"url": endpoint.url, "changes": changes})
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: Endpoint, actor: Any) -> None:
    # Written before the delete: the event still names the endpoint's id and org.
    audit(actor, AuditEvent.Type.WEBHOOK_DELETED, endpoint, data={"url": endpoint.url, "events": endpoint.events})
    endpoint.delete()


@transaction.atomic
def endpoint_secret_reveal(*, endpoint: Endpoint, actor: Any) -> Endpoint:
    """The endpoint, for a caller about to show its secret: every reveal is on the record (not the secret)."""
    audit(actor, AuditEvent.Type.WEBHOOK_SECRET_REVEALED, endpoint, data={"url": endpoint.url})
    return endpoint


@transaction.atomic
def endpoint_secrets_reseal() -> int:
    """Every endpoint's signing secret sealed again with the first sealing key; how many.

    Each row is opened with whichever key sealed it and written back sealed with the first
    (:class:`pendra_console.sealing.SealedTextField` does both), under a row lock.
    """
    endpoints = list(Endpoint.objects.select_for_update().only("id", "secret").order_by("pk"))
    for endpoint in endpoints:
        endpoint.save(update_fields=["secret"])
    return len(endpoints)


def payload(event: Event) -> bytes:
    """The body every endpoint receives for ``event``: the same bytes on every attempt."""
    document = {
        "id": str(event.id),
        "type": event.type,
        "created": int(event.created_at.timestamp()),
        "org": event.org.slug,
        "data": event.data,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


@transaction.atomic
def emit_event(*, org: Organisation, event: str, data: dict[str, Any]) -> None:
    """Record ``event`` for ``org`` and queue a signed delivery to each active endpoint subscribed to it."""
    if event not in EventType.values:
        raise ValueError(f"unknown webhook event {event!r}")
    endpoints = [e for e in Endpoint.objects.filter(org=org, active=True) if event in e.events]
    if not endpoints:
        return
    recorded = Event.objects.create(org=org, type=event, data=data)
    now = timezone.now()
    deliveries = Delivery.objects.bulk_create(
        Delivery(endpoint=endpoint, event=recorded, next_attempt_at=now) for endpoint in endpoints
    )
    for delivery in deliveries:
        send_after_commit(delivery_id=str(delivery.pk))


def send_after_commit(*, delivery_id: str) -> None:
    transaction.on_commit(functools.partial(_queue, delivery_id))


def _queue(delivery_id: str, countdown: float | None = None) -> None:
    try:
        # By name: tasks.py imports this module, not the other way round.
        celery_app.send_task(DELIVER_TASK, args=[delivery_id], countdown=countdown)
    except (BrokerOperationalError, RedisError, OSError) as exc:
        # The row stays pending with its due time: the periodic sweep sends it.
        logger.warning("could not queue webhook delivery %s (%s); the sweep sends it", delivery_id, exc)


def queue_later(*, delivery_id: str, countdown: float) -> None:
    _queue(delivery_id, countdown)


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: exponential from the base, capped."""
    base = settings.PENDRA_WEBHOOK_RETRY_BASE_SECONDS
    return float(min(base * (2 ** (attempt - 1)), settings.PENDRA_WEBHOOK_RETRY_MAX_SECONDS))


def _claim(delivery_id: str, now: datetime) -> Delivery | None:
    """The delivery if this process may make its next attempt now, with ``attempts`` already counted."""
    delivery = Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING).first()
    if delivery is None or (delivery.next_attempt_at is not None and delivery.next_attempt_at > now):
        return None
    # Moving next_attempt_at past the attempt's timeout keeps the sweep away while it runs.
    busy_until = now + timedelta(seconds=settings.PENDRA_WEBHOOK_TIMEOUT + 30)
    n = Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING, attempts=delivery.attempts).update(
        attempts=delivery.attempts + 1, next_attempt_at=busy_until
    )
    if n != 1:
        return None  # another process claimed this attempt
    delivery.attempts += 1
    return delivery


def attempt_delivery(*, delivery_id: str) -> float | None:
    """Make one attempt; returns seconds until the next one when it failed and may be retried, else None."""
    now = timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    endpoint = Endpoint.objects.get(pk=delivery.endpoint_id)
    event = Event.objects.select_related("org").get(pk=delivery.event_id)
    outcome = post_signed(
        url=endpoint.url,
        secret=endpoint.secret,
        body=payload(event),
        event_type=event.type,
        delivery_id=str(delivery.pk),
        timeout=settings.PENDRA_WEBHOOK_TIMEOUT,
    )
    return _record_attempt(delivery=delivery, started_at=now, outcome=outcome)


@transaction.atomic
def _record_attempt(*, delivery: Delivery, started_at: datetime, outcome: Outcome) -> float | None:
    Attempt.objects.create(
        delivery=delivery,
        started_at=started_at,
        duration_ms=round(outcome.duration_ms, 1),
        status_code=outcome.status_code,
        response_snippet=outcome.snippet[:1000],
        error=outcome.error[:300],
    )
    delay: float | None = None
    if outcome.ok:
        state, next_at = DeliveryState.SUCCEEDED, None
    elif delivery.attempts >= settings.PENDRA_WEBHOOK_MAX_ATTEMPTS:
        state, next_at = DeliveryState.FAILED, None
    else:
        delay = retry_delay(delivery.attempts)
        state, next_at = DeliveryState.PENDING, timezone.now() + timedelta(seconds=delay)
    Delivery.objects.filter(pk=delivery.pk).update(
        state=state, next_attempt_at=next_at, last_status_code=outcome.status_code, updated_at=timezone.now()
    )
    logger.info(
        "webhook delivery %s attempt %d: %s", delivery.pk, delivery.attempts, outcome.status_code or outcome.error
    )
    return delay


@transaction.atomic
def delivery_resend(*, delivery: Delivery, actor: Any) -> Delivery:
    """Send the delivery again now, with a fresh round of attempts (the earlier attempts stay recorded)."""
    endpoint = delivery.endpoint
    audit(
        actor,
        AuditEvent.Type.WEBHOOK_RESENT,
        endpoint,
        data={"url": endpoint.url, "event": delivery.event.type, "delivery_id": str(delivery.pk)},
    )
    Delivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.PENDING, attempts=0, next_attempt_at=timezone.now(), updated_at=timezone.now()
    )
    send_after_commit(delivery_id=str(delivery.pk))
    delivery.refresh_from_db()
    return delivery


def send_stale(*, now: datetime | None = None, limit: int = 200) -> int:
    """Queue pending deliveries overdue by a minute: their message was lost (broker down, worker killed)."""
    now = now or timezone.now()
    overdue = Delivery.objects.filter(
        state=DeliveryState.PENDING, next_attempt_at__lte=now - timedelta(seconds=60)
    ).order_by("next_attempt_at")[:limit]
    ids = [str(pk) for pk in overdue.values_list("pk", flat=True)]
    for delivery_id in ids:
        _queue(delivery_id)
    return len(ids)
