from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    """Organisation roles, strongest first. Compare with :func:`role_at_least`."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


ROLE_RANK = {Role.OWNER: 3, Role.ADMIN: 2, Role.MEMBER: 1}


def role_at_least(role: str | None, required: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(required)]


class PlatformRole(models.TextChoices):
    """Pendra's own staff, across organisations. Stored as Django groups of these names."""

    SUPPORT = "support", "Support staff"
    OPERATOR = "operator", "Operator"


class Organisation(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    # How the audit log names this object (apps.audit): an org's events belong to the org itself.
    audit_type = "org"

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def audit_org(self) -> Organisation:
        return self


class Membership(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="membership_unique_org_user")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.org_id}:{self.role}"


class Invitation(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices)
    # Only a hash of the token is kept; the token itself is shown once to the inviter and emailed.
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.org_id} as {self.role}"

    @staticmethod
    def hash_token(token: str) -> str:
        # The token carries 256 random bits, so a plain SHA-256 cannot be brute-forced.
        return hashlib.sha256(token.encode()).hexdigest()

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "pending"
