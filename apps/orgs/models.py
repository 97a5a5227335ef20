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

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


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


class AuditEvent(models.Model):
    """Who did what to which object, when, in which request. Never holds a secret."""

    class Type(models.TextChoices):
        ORG_CREATED = "org.created"
        ORG_CHANGED = "org.changed"
        ORG_DELETED = "org.deleted"
        MEMBER_ADDED = "member.added"
        MEMBER_REMOVED = "member.removed"
        MEMBER_ROLE_CHANGED = "member.role_changed"
        OWNERSHIP_TRANSFERRED = "org.ownership_transferred"
        INVITATION_SENT = "invitation.sent"
        INVITATION_ACCEPTED = "invitation.accepted"
        INVITATION_REVOKED = "invitation.revoked"
        KEY_CREATED = "key.created"
        KEY_CHANGED = "key.changed"
        KEY_ROTATED = "key.rotated"
        KEY_REVEALED = "key.revealed"
        KEY_REVOKED = "key.revoked"
        KEY_EXPIRED = "key.expired"
        PLAN_CHANGED = "plan.changed"
        PLAN_EDITED = "plan.edited"
        WORKER_REGISTERED = "worker.registered"
        WORKER_CHANGED = "worker.changed"
        WORKER_STATE_CHANGED = "worker.state_changed"
        WORKER_REMOVED = "worker.removed"
        REQUEST_LOOKED_UP = "request.looked_up"

    org = models.ForeignKey(Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    event_type = models.CharField(max_length=40, choices=Type.choices)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="audit_org_time"),
            models.Index(fields=["org", "event_type", "-created_at"], name="audit_org_type_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.target_type}:{self.target_id}"
