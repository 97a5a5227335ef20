"""Webhook endpoints an org registers, the events it is sent, and every delivery attempt.

An :class:`Event` is recorded once; each endpoint subscribed to its type gets one
:class:`Delivery`, and each try at sending it is an :class:`Attempt` with the response's
status and the start of its body. The endpoint's signing secret is stored sealed (the HMAC
needs it back, so it cannot be a hash: :mod:`pendra_console.sealing`) and never leaves the
row except in the create and reveal responses.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from pendra_console.sealing import SealedTextField


class EventType(models.TextChoices):
    BUDGET_THRESHOLD = "budget.threshold", "A budget crossed 50, 80 or 100 %"
    KEY_EXPIRING = "key.expiring", "An API key expires soon"
    KEY_EXPIRED = "key.expired", "An API key expired"
    KEY_ROTATED = "key.rotated", "An API key was rotated"
    WORKER_UNHEALTHY = "worker.unhealthy", "A worker of the org's dedicated plan became unhealthy"


class Endpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey("orgs.Organisation", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    secret = SealedTextField()
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    audit_type = "webhook_endpoint"

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url


class Event(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey("orgs.Organisation", on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=40, choices=EventType.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    # Attempts of the current round; a re-send starts a new round (the attempts stay recorded).
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once")]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id}: {self.state}"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_snippet = models.CharField(max_length=1000, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.status_code or self.error}"
