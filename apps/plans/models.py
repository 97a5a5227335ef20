from __future__ import annotations

from django.db import models


class Plan(models.Model):
    """A subscription plan: a price and one limit per rate-limit bucket.

    Limits are per organisation. ``None`` on a cap means unlimited.
    """

    slug = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=60)
    monthly_price_cents = models.PositiveIntegerField(default=0)
    sort_order = models.PositiveSmallIntegerField(default=0)
    is_public = models.BooleanField(default=True)

    # Requests per minute.
    chat_rpm = models.PositiveIntegerField()
    embeddings_rpm = models.PositiveIntegerField()
    images_rpm = models.PositiveIntegerField()
    audio_rpm = models.PositiveIntegerField()
    api_rpm = models.PositiveIntegerField()
    # Tokens per minute, from the worker's reported usage.
    chat_tpm = models.PositiveIntegerField()
    embeddings_tpm = models.PositiveIntegerField()
    # Streams open at once.
    concurrent_streams = models.PositiveIntegerField()
    # Caps on what an organisation may hold.
    max_keys = models.PositiveIntegerField(null=True, blank=True)
    max_members = models.PositiveIntegerField(null=True, blank=True)

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "monthly_price_cents"]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_id(self) -> str:
        """The audit log names a plan by its slug, which never changes."""
        return self.slug


class Subscription(models.Model):
    org = models.OneToOneField("orgs.Organisation", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    since = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.org_id} on {self.plan_id}"
