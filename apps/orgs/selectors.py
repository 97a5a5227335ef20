"""Reads of organisations, memberships, invitations and audit events; each scoped to an org or a user."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from apps.orgs.models import AuditEvent, Invitation, Membership, Organisation


def membership_for(*, user: Any, slug: str) -> Membership | None:
    """The caller's membership in the org with this slug, or None (outsider or no such org: same answer)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.select_related("org").filter(org__slug=slug, user=user).first()


def memberships_of(*, user: Any) -> QuerySet[Membership]:
    return Membership.objects.select_related("org").filter(user=user).order_by("org__slug")


def org_members(*, org: Organisation) -> QuerySet[Membership]:
    return Membership.objects.select_related("user").filter(org=org).order_by("id")


def org_member(*, org: Organisation, membership_id: int) -> Membership | None:
    return Membership.objects.select_related("user", "org").filter(org=org, pk=membership_id).first()


def org_invitations(*, org: Organisation) -> QuerySet[Invitation]:
    return Invitation.objects.select_related("invited_by").filter(org=org).order_by("-created_at", "-id")


def org_invitation(*, org: Organisation, invitation_id: int) -> Invitation | None:
    return Invitation.objects.select_related("org").filter(org=org, pk=invitation_id).first()


def invitation_by_token(*, token: str) -> Invitation | None:
    """The invitation this token opens, whatever its state; the token is the only proof of it."""
    invitations = Invitation.objects.select_related("org", "invited_by")
    return invitations.filter(token_hash=Invitation.hash_token(token)).first()


def org_audit_events(
    *,
    org: Organisation,
    actor_id: int | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("actor").filter(org=org)
    if actor_id is not None:
        events = events.filter(actor_id=actor_id)
    if event_type:
        events = events.filter(event_type=event_type)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events.order_by("-created_at", "-id")
