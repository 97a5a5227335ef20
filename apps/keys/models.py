from __future__ import annotations

from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# --- The one "usable at" rule --------------------------------------------------
#
# A key authenticates at ``now`` when it is not revoked, has a secret (a successor of a
# scheduled rotation has none until it is revealed), and neither its expiry nor the end
# of its rotation grace has passed. The rule is written once, over the field names below:
# ``usable_q`` says it in SQL and ``key_usable_at`` in Python (for a row or for the
# gateway's cached copy of one), so the two cannot drift apart.

_ENDS = ("expires_at", "grace_until")  # the key stops at the first of these that has passed


class KeyFacts(Protocol):
    revoked_at: datetime | None
    secret_hash: str
    expires_at: datetime | None
    grace_until: datetime | None


def _open_q(now: datetime) -> Q:
    window = Q()
    for end in _ENDS:
        window &= Q(**{f"{end}__isnull": True}) | Q(**{f"{end}__gt": now})
    return window


def held_q(now: datetime) -> Q:
    """Not revoked and not past an end: the key counts against the plan's cap, secret or not."""
    return Q(revoked_at__isnull=True) & _open_q(now)


def usable_q(now: datetime) -> Q:
    return held_q(now) & ~Q(secret_hash="")


def key_held_at(key: KeyFacts, now: datetime) -> bool:
    if key.revoked_at is not None:
        return False
    return all(getattr(key, end) is None or getattr(key, end) > now for end in _ENDS)


def key_usable_at(key: KeyFacts, now: datetime) -> bool:
    return key_held_at(key, now) and bool(key.secret_hash)


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def usable_at(self, now: datetime) -> ApiKeyQuerySet:
        return self.filter(usable_q(now))

    def held_at(self, now: datetime) -> ApiKeyQuerySet:
        return self.filter(held_q(now))

    def ended_at(self, now: datetime) -> ApiKeyQuerySet:
        """Not revoked, but past its expiry or its rotation grace: it stopped by itself."""
        return self.filter(revoked_at__isnull=True).exclude(_open_q(now))


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
    # Per-key controls inside the org's (apps/keys/controls.py); empty or null: only the org's apply.
    allowed_models = models.JSONField(default=list, blank=True)
    allowed_ips = models.JSONField(default=list, blank=True)  # CIDRs the key's requests may come from
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)

    audit_type = "api_key"  # how the audit log names a key

    objects = ApiKeyQuerySet.as_manager()

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
        return key_usable_at(self, now)

    @property
    def status(self) -> str:
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
