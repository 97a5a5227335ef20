from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    """An API key: ``pnd_<public_id>_<secret><checksum>``; only an HMAC of the secret is kept.

    Rotation creates a successor (``rotated_from`` points back, unique, so two
    concurrent rotations cannot both succeed) and gives the predecessor a
    ``grace_until`` after which it stops working. A successor made by the schedule has
    no secret yet (``secret_hash`` empty, ``awaiting_reveal``): the first reveal mints
    it, so no plaintext secret is ever stored, mailed or logged.
    """

    public_id = models.CharField(max_length=16, unique=True)
    org = models.ForeignKey(
        "orgs.Organisation", null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    secret_hash = models.CharField(max_length=64, blank=True)
    last_four = models.CharField(max_length=4, blank=True)
    awaiting_reveal = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set once the periodic task has recorded the expiry (audit event written).
    expired_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="successor"
    )
    rotated_at = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    rotate_every_days = models.PositiveIntegerField(null=True, blank=True)
    rotation_grace_seconds = models.PositiveIntegerField(default=86400)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["org", "user"], name="apikey_org_user"),
            models.Index(fields=["expires_at"], name="apikey_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (pnd_{self.public_id}_...{self.last_four})"

    @property
    def prefix(self) -> str:
        return f"pnd_{self.public_id}"

    def usable_at(self, now: datetime) -> bool:
        if self.revoked_at is not None or not self.secret_hash:
            return False
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return self.grace_until is None or self.grace_until > now

    @property
    def status(self) -> str:
        from django.utils import timezone

        now = timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.awaiting_reveal:
            return "awaiting_reveal"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.grace_until is not None:
            return "rotating" if self.grace_until > now else "rotated"
        return "active"


class ExpiryNotice(models.Model):
    """One row per (key, days-before-expiry) notice sent: the unique constraint makes each exactly once."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="expiry_notices")
    days_before = models.PositiveSmallIntegerField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "days_before"], name="expiry_notice_once")]

    def __str__(self) -> str:
        return f"{self.api_key_id}: {self.days_before} days"
