from __future__ import annotations

import uuid

from django.db import models


class ModelKind(models.TextChoices):
    CHAT = "chat", "Chat"
    EMBEDDINGS = "embeddings", "Embeddings"
    IMAGE = "image", "Image generation"
    AUDIO = "audio", "Audio"


class WorkerState(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"
    DRAINING = "draining", "Draining"
    DISABLED = "disabled", "Disabled"


class Worker(models.Model):
    """A GPU worker: any OpenAI-compatible server the gateway may route to.

    ``served_models`` is a list of ``{"name": ..., "kind": ...}``; the health sweep refreshes
    the names from the worker's ``/v1/models``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500)
    served_models = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=WorkerState.choices, default=WorkerState.UNHEALTHY)
    dedicated_org = models.ForeignKey(
        "orgs.Organisation", null=True, blank=True, on_delete=models.SET_NULL, related_name="dedicated_workers"
    )
    last_checked_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    latency_ms_avg = models.FloatField(null=True, blank=True)
    # The last few probe results, newest first: [{"at", "ok", "latency_ms", "error"}].
    recent_checks = models.JSONField(default=list, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WorkerEvent(models.Model):
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=10, choices=WorkerState.choices, blank=True)
    to_state = models.CharField(max_length=10, choices=WorkerState.choices)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.worker_id}: {self.from_state} -> {self.to_state}"
