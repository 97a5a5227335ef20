"""Reads of organisations, memberships and invitations; each scoped to an org or a user."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.orgs.models import Invitation, Membership, Organisation, Role


def membership_for(*, user: Any, slug: str) -> Membership | None:
    """The caller's membership in the org with this slug, or None (outsider or no such org: same answer)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.select_related("org").filter(org__slug=slug, user=user).first()


def org_by_slug_for_staff(*, slug: str) -> Organisation | None:
    """Any org by slug, for Pendra's operators (e.g. a worker dedicated to it); never for an org's own users."""
    return Organisation.objects.filter(slug=slug).first()


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


def member_count(*, org: Organisation) -> int:
    """How many members the org holds (the plan's cap on members counts these)."""
    return Membership.objects.filter(org=org).count()


def owner_emails(*, org_id: int) -> list[str]:
    """The email addresses of the org's active owners (who hear about its keys' expiry)."""
    return list(
        Membership.objects.filter(org_id=org_id, role=Role.OWNER, user__is_active=True)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
