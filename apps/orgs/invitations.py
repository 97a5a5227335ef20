"""Every change to invitations: create, accept, revoke.

An invitation is a hashed, single-use token addressed to one email with a role; the
token is returned once at creation and only its hash is kept. Accepting it makes the
signed-in invitee a member, under the plan's cap on members like any other join.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.orgs.models import Invitation, Membership, Organisation
from apps.orgs.services import valid_role
from apps.orgs.signals import member_joining
from pendra_console.api.exceptions import Gone, NotFound, ValidationError

User = get_user_model()

INVITATION_TTL = timedelta(days=7)


@transaction.atomic
def invitation_create(
    *, org: Organisation, email: str, role: str, actor: Any, ttl: timedelta = INVITATION_TTL
) -> tuple[Invitation, str]:
    """The invitation and its token; the token is returned here once and only its hash is kept."""
    role = valid_role(role)
    email = User.objects.normalize_email(email.strip())
    if Membership.objects.filter(org=org, user__email__iexact=email).exists():
        raise ValidationError({"email": "This person is already a member of the organisation."})
    token = "inv_" + secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        org=org,
        email=email,
        role=role,
        token_hash=Invitation.hash_token(token),
        invited_by=actor,
        expires_at=timezone.now() + ttl,
    )
    audit(actor, AuditEvent.Type.INVITATION_SENT, invitation, data={"email": email, "role": role})
    return invitation, token


@transaction.atomic
def invitation_accept(*, token: str, user: Any) -> Membership:
    """Accepted by the signed-in invitee only (their email must match); usable once, until it expires."""
    invitation = Invitation.objects.select_for_update().filter(token_hash=Invitation.hash_token(token)).first()
    # Someone else's invitation looks exactly like no invitation: the token is the only proof.
    if invitation is None or invitation.email.lower() != (user.email or "").lower():
        raise NotFound("No invitation matches this token for your account.")
    if invitation.revoked_at is not None or invitation.accepted_at is not None:
        raise Gone("This invitation was already used or withdrawn.")
    now = timezone.now()
    if invitation.expires_at <= now:
        raise Gone("This invitation has expired; ask for a new one.")
    if Membership.objects.filter(org=invitation.org, user=user).exists():
        raise ValidationError({"token": "You are already a member of this organisation."})
    member_joining.send(sender=Organisation, org=invitation.org)  # plans: the plan's cap on members (403 naming it)
    membership = Membership.objects.create(org=invitation.org, user=user, role=invitation.role)
    invitation.accepted_at = now
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit(
        user,
        AuditEvent.Type.INVITATION_ACCEPTED,
        invitation,
        data={"email": invitation.email, "role": invitation.role},
    )
    audit(
        user,
        AuditEvent.Type.MEMBER_ADDED,
        membership,
        org=invitation.org,
        data={"user_id": user.pk, "role": invitation.role, "via": "invitation"},
    )
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: Any) -> Invitation:
    n = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if n != 1:
        raise Gone("This invitation was already used or withdrawn.")
    invitation.refresh_from_db()
    audit(actor, AuditEvent.Type.INVITATION_REVOKED, invitation, data={"email": invitation.email})
    return invitation
