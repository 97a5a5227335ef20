from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what to which object, when, in which request. Never holds a secret.

    The table keeps the name it had when the model lived in the orgs app
    (``orgs_auditevent``), so the rows written then are still the log.
    """

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
        BUDGET_CHANGED = "budget.changed"
        WEBHOOK_CREATED = "webhook.created"
        WEBHOOK_CHANGED = "webhook.changed"
        WEBHOOK_DELETED = "webhook.deleted"
        WEBHOOK_SECRET_REVEALED = "webhook.secret_revealed"  # noqa: S105  (an event name, not a secret)
        WEBHOOK_RESENT = "webhook.resent"
        WORKER_REGISTERED = "worker.registered"
        WORKER_CHANGED = "worker.changed"
        WORKER_STATE_CHANGED = "worker.state_changed"
        WORKER_REMOVED = "worker.removed"
        REQUEST_LOOKED_UP = "request.looked_up"

    # A string reference, not an import: the audit log sits below every domain app.
    org = models.ForeignKey(
        "orgs.Organisation", null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
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
        db_table = "orgs_auditevent"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="audit_org_time"),
            models.Index(fields=["org", "event_type", "-created_at"], name="audit_org_type_time"),
            # A staff member's recent lookups (the support page).
            models.Index(fields=["actor", "event_type", "-created_at"], name="audit_actor_type_time"),
            # Platform events (no org: lookups, worker and plan edits), newest first, for operators.
            models.Index(fields=["-created_at"], name="audit_platform_time", condition=models.Q(org__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.target_type}:{self.target_id}"
