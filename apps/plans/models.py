from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q


class Plan(models.Model):
    """A subscription plan: a price and one limit per rate-limit bucket.

    Limits are per organisation. ``None`` on a cap means unlimited.
    """

    slug = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=60)
    monthly_price_cents = models.PositiveIntegerField(default=0)
    sort_order = models.PositiveSmallIntegerField(default=0)
    is_public = models.BooleanField(default=True)
    # An owner may move the org to a self-serve plan; the others are set by an operator.
    self_serve = models.BooleanField(default=True)
    # A plan made for one org at a time: its limits are the plan's plus the subscription's overrides,
    # and its workers are the ones dedicated to that org (apps.workers, Worker.dedicated_org).
    dedicated = models.BooleanField(default=False)

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
    # An operator's per-org limits over the plan's: {limit field: value (null: unlimited for caps)}.
    overrides = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.org_id} on {self.plan_id}"


# Prices are USD per million tokens and per unit with at most 4 places, so a request's cost
# (tokens x price / 1e6 + units x price) has at most 10 places: UsageRecord.cost holds it exactly.
_PRICE = {"max_digits": 14, "decimal_places": 4, "default": Decimal(0)}


class Price(models.Model):
    """What one request costs on a plan, for models matching ``model_pattern`` of ``kind``.

    The most specific row wins: an exact model name, then the longest glob, then ``*``;
    a row of the request's kind before one for any kind (``kind`` empty).
    """

    class Kind(models.TextChoices):
        ANY = "", "any"
        CHAT = "chat"
        EMBEDDINGS = "embeddings"
        IMAGES = "images"
        AUDIO = "audio"

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="prices")
    kind = models.CharField(max_length=20, choices=Kind.choices, default="", blank=True)
    model_pattern = models.CharField(max_length=200, default="*")
    input_per_million = models.DecimalField(**_PRICE)
    output_per_million = models.DecimalField(**_PRICE)
    # Per image generated; per request for audio (the gateway measures no audio seconds).
    per_unit = models.DecimalField(**_PRICE)

    class Meta:
        ordering = ["plan", "kind", "model_pattern"]
        constraints = [models.UniqueConstraint(fields=["plan", "kind", "model_pattern"], name="price_unique")]

    def __str__(self) -> str:
        return f"{self.plan_id} {self.kind or 'any'} {self.model_pattern}"


class Budget(models.Model):
    """A monthly spend budget (USD) of an org (``api_key`` null) or of one of its keys.

    ``hard``: once spent, the gateway refuses with 429 naming the ``budget`` bucket; else
    it only alerts. Alerts go at 50, 80 and 100 % once per calendar month (UTC).
    """

    org = models.ForeignKey("orgs.Organisation", on_delete=models.CASCADE, related_name="budgets")
    api_key = models.ForeignKey("keys.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    monthly_usd = models.DecimalField(max_digits=14, decimal_places=4)
    hard = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["org_id", "api_key_id"]
        constraints = [
            models.UniqueConstraint(fields=["org"], condition=Q(api_key__isnull=True), name="budget_one_per_org"),
            models.UniqueConstraint(fields=["api_key"], name="budget_one_per_key"),
        ]

    def __str__(self) -> str:
        return f"budget {self.monthly_usd} of {self.org_id}/{self.api_key_id or '-'}"

    @property
    def audit_type(self) -> str:
        return "budget"


class BudgetAlert(models.Model):
    """One threshold alert sent: unique per budget, month and threshold, so two processes
    checking at once cannot both send it."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period = models.CharField(max_length=7)  # "2026-11"
    threshold = models.PositiveSmallIntegerField()  # percent
    spent = models.DecimalField(max_digits=20, decimal_places=10)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period", "threshold"], name="budget_alert_once"),
        ]

    def __str__(self) -> str:
        return f"{self.threshold}% of budget {self.budget_id} in {self.period}"
