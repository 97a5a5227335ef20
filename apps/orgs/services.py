"""Every change to organisations, memberships, invitations and platform roles.

Each service runs in one transaction and writes its audit event, so a rule and its
record are never separated. Role checks of *who may call* a service live in the API's
base view (``apps.orgs.permissions``); the services enforce the invariants that hold
whoever calls them (an org keeps an owner, an invitation is used once, ...).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.keys.authentication import key_cache
from apps.keys.models import ApiKey
from apps.orgs.exceptions import Conflict, Gone, NotFound, ValidationError
from apps.orgs.models import AuditEvent, Invitation, Membership, Organisation, PlatformRole, Role
from pendra_console.request_id import current_request_id

User = get_user_model()

INVITATION_TTL = timedelta(days=7)
_SLUG_ATTEMPTS = 20


def audit_record(
    *,
    event_type: str,
    org: Organisation | None,
    actor: Any,
    target_type: str = "",
    target_id: str | int = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """One audit line; the request id ties it to the access log. Never pass a secret in ``data``."""
    request_id = current_request_id.get()
    return AuditEvent.objects.create(
        event_type=event_type,
        org=org,
        actor=actor if actor is not None and getattr(actor, "pk", None) else None,
        target_type=target_type,
        target_id=str(target_id),
        data=data or {},
        request_id="" if request_id == "-" else request_id,
    )


# --- Organisations -----------------------------------------------------------


def _free_slug(base: str) -> str:
    base = (base or "org")[:40].strip("-") or "org"
    if not Organisation.objects.filter(slug=base).exists():
        return base
    for _ in range(_SLUG_ATTEMPTS):
        candidate = f"{base}-{secrets.token_hex(3)}"
        if not Organisation.objects.filter(slug=candidate).exists():
            return candidate
    raise Conflict("Could not find a free slug; choose one explicitly.")


@transaction.atomic
def org_create(*, name: str, slug: str | None = None, owner: Any) -> Organisation:
    """A new organisation whose creator is its first owner."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name must not be blank."})
    if slug:
        if slugify(slug) != slug:
            raise ValidationError({"slug": "Use lowercase letters, digits and hyphens."})
        if Organisation.objects.filter(slug=slug).exists():
            raise ValidationError({"slug": f"The slug {slug!r} is taken."})
    else:
        slug = _free_slug(slugify(name))
    try:
        with transaction.atomic():
            org = Organisation.objects.create(name=name, slug=slug)
    except IntegrityError:
        raise ValidationError({"slug": f"The slug {slug!r} is taken."}) from None
    membership = Membership.objects.create(org=org, user=owner, role=Role.OWNER)
    audit_record(
        event_type=AuditEvent.Type.ORG_CREATED,
        org=org,
        actor=owner,
        target_type="org",
        target_id=org.pk,
        data={"slug": org.slug, "name": org.name},
    )
    audit_record(
        event_type=AuditEvent.Type.MEMBER_ADDED,
        org=org,
        actor=owner,
        target_type="membership",
        target_id=membership.pk,
        data={"user_id": owner.pk, "role": Role.OWNER},
    )
    return org


@transaction.atomic
def org_update(*, org: Organisation, actor: Any, name: str | None = None) -> Organisation:
    """Rename. The slug is the org's address in every URL and key, so it never changes."""
    changes: dict[str, Any] = {}
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationError({"name": "Name must not be blank."})
        if name != org.name:
            changes["name"] = {"from": org.name, "to": name}
            org.name = name
    if changes:
        org.save(update_fields=["name"])
        audit_record(
            event_type=AuditEvent.Type.ORG_CHANGED,
            org=org,
            actor=actor,
            target_type="org",
            target_id=org.pk,
            data=changes,
        )
    return org


@transaction.atomic
def org_delete(*, org: Organisation, actor: Any) -> None:
    """Delete the org with its memberships and keys; the audit line outlives it (org=None)."""
    public_ids = list(ApiKey.objects.filter(org=org).values_list("public_id", flat=True))
    audit_record(
        event_type=AuditEvent.Type.ORG_DELETED,
        org=None,
        actor=actor,
        target_type="org",
        target_id=org.pk,
        data={"slug": org.slug, "name": org.name},
    )
    org.delete()
    _evict(public_ids)


# --- Memberships ---------------------------------------------------------------


def _evict_user_keys(*, org: Organisation, user_id: int) -> None:
    """Keys act with their user's current role: this process forgets what it cached about them."""
    _evict(list(ApiKey.objects.filter(org=org, user_id=user_id).values_list("public_id", flat=True)))


def _evict(public_ids: list[str]) -> None:
    """Forget cached keys now and again after commit, so a racing gateway request cannot re-cache stale facts."""

    def evict_all() -> None:
        for public_id in public_ids:
            key_cache.evict(public_id)

    evict_all()
    transaction.on_commit(evict_all)


def _enforce_plan_cap(*, org: Organisation, what: str) -> None:
    # Imported here: apps.plans.services imports this module (audit_record).
    from apps.plans.services import enforce_cap

    enforce_cap(org=org, what=what)  # type: ignore[arg-type]


def _valid_role(role: str) -> Role:
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}; use one of: {', '.join(Role.values)}."})
    return Role(role)


def _lock_owners(org: Organisation) -> int:
    """Lock the org's owner rows and count them, so two demotions cannot both pass the check."""
    return len(list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER).values_list("pk")))


@transaction.atomic
def membership_add(*, org: Organisation, user: Any, role: str, actor: Any) -> Membership:
    role = _valid_role(role)
    if Membership.objects.filter(org=org, user=user).exists():
        raise ValidationError({"email": "This user is already a member of the organisation."})
    _enforce_plan_cap(org=org, what="members")  # plans: the plan's cap on members (403 naming it)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(org=org, user=user, role=role)
    except IntegrityError:
        raise ValidationError({"email": "This user is already a member of the organisation."}) from None
    audit_record(
        event_type=AuditEvent.Type.MEMBER_ADDED,
        org=org,
        actor=actor,
        target_type="membership",
        target_id=membership.pk,
        data={"user_id": user.pk, "role": role},
    )
    return membership


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor: Any) -> Membership:
    role = _valid_role(role)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    previous = membership.role
    if previous == role:
        return membership
    if previous == Role.OWNER and _lock_owners(membership.org) <= 1:
        raise ValidationError({"role": "An organisation must keep at least one owner; transfer ownership first."})
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        event_type=AuditEvent.Type.MEMBER_ROLE_CHANGED,
        org=membership.org,
        actor=actor,
        target_type="membership",
        target_id=membership.pk,
        data={"user_id": membership.user_id, "from": previous, "to": role},
    )
    _evict_user_keys(org=membership.org, user_id=membership.user_id)
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Any) -> None:
    """Remove a member and revoke their keys in the org: a former member's key must not keep working."""
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    org = membership.org
    membership_id = membership.pk
    if membership.role == Role.OWNER and _lock_owners(org) <= 1:
        raise ValidationError({"member": "An organisation must keep at least one owner; transfer ownership first."})
    now = timezone.now()
    keys = list(ApiKey.objects.filter(org=org, user_id=membership.user_id, revoked_at__isnull=True))
    ApiKey.objects.filter(pk__in=[key.pk for key in keys]).update(revoked_at=now)
    for key in keys:
        audit_record(
            event_type=AuditEvent.Type.KEY_REVOKED,
            org=org,
            actor=actor,
            target_type="api_key",
            target_id=key.pk,
            data={"prefix": key.prefix, "reason": "member removed"},
        )
    membership.delete()
    audit_record(
        event_type=AuditEvent.Type.MEMBER_REMOVED,
        org=org,
        actor=actor,
        target_type="membership",
        target_id=membership_id,
        data={"user_id": membership.user_id},
    )
    _evict_user_keys(org=org, user_id=membership.user_id)


@transaction.atomic
def ownership_transfer(*, org: Organisation, actor: Any, to_membership: Membership) -> Membership:
    """The target becomes an owner and the acting owner becomes an admin, in one step."""
    if to_membership.org_id != org.pk:
        raise NotFound("No such member in this organisation.")
    current = Membership.objects.select_for_update().filter(org=org, user=actor).first()
    if current is None or current.role != Role.OWNER:
        raise ValidationError({"member": "Only an owner can transfer ownership."})
    target = Membership.objects.select_for_update().get(pk=to_membership.pk)
    if target.pk == current.pk:
        raise ValidationError({"member_id": "You already own this organisation; choose another member."})
    previous = target.role
    target.role = Role.OWNER
    target.save(update_fields=["role"])
    current.role = Role.ADMIN
    current.save(update_fields=["role"])
    audit_record(
        event_type=AuditEvent.Type.OWNERSHIP_TRANSFERRED,
        org=org,
        actor=actor,
        target_type="membership",
        target_id=target.pk,
        data={"to_user_id": target.user_id, "from_user_id": actor.pk, "previous_role": previous},
    )
    _evict_user_keys(org=org, user_id=target.user_id)
    _evict_user_keys(org=org, user_id=actor.pk)
    return target


# --- Invitations ---------------------------------------------------------------


@transaction.atomic
def invitation_create(
    *, org: Organisation, email: str, role: str, actor: Any, ttl: timedelta = INVITATION_TTL
) -> tuple[Invitation, str]:
    """The invitation and its token; the token is returned here once and only its hash is kept."""
    role = _valid_role(role)
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
    audit_record(
        event_type=AuditEvent.Type.INVITATION_SENT,
        org=org,
        actor=actor,
        target_type="invitation",
        target_id=invitation.pk,
        data={"email": email, "role": role},
    )
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
    _enforce_plan_cap(org=invitation.org, what="members")  # plans: the plan's cap on members (403 naming it)
    membership = Membership.objects.create(org=invitation.org, user=user, role=invitation.role)
    invitation.accepted_at = now
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        event_type=AuditEvent.Type.INVITATION_ACCEPTED,
        org=invitation.org,
        actor=user,
        target_type="invitation",
        target_id=invitation.pk,
        data={"email": invitation.email, "role": invitation.role},
    )
    audit_record(
        event_type=AuditEvent.Type.MEMBER_ADDED,
        org=invitation.org,
        actor=user,
        target_type="membership",
        target_id=membership.pk,
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
    audit_record(
        event_type=AuditEvent.Type.INVITATION_REVOKED,
        org=invitation.org,
        actor=actor,
        target_type="invitation",
        target_id=invitation.pk,
        data={"email": invitation.email},
    )
    return invitation


# --- Platform roles ------------------------------------------------------------


def _platform_role_group(role: str) -> Group:
    if role not in PlatformRole.values:
        raise ValidationError({"role": f"Unknown platform role {role!r}; use support or operator."})
    group, _ = Group.objects.get_or_create(name=role)
    return group


@transaction.atomic
def platform_role_grant(*, user: AbstractBaseUser, role: str, actor: Any = None) -> None:
    """Make ``user`` support staff or an operator (a Django group, created if missing)."""
    user.groups.add(_platform_role_group(role))  # type: ignore[attr-defined]
    _platform_role_changed(user=user, actor=actor, data={"platform_role": role})


@transaction.atomic
def platform_role_revoke(*, user: AbstractBaseUser, role: str, actor: Any = None) -> None:
    user.groups.remove(_platform_role_group(role))  # type: ignore[attr-defined]
    _platform_role_changed(user=user, actor=actor, data={"platform_role_removed": role})


def _platform_role_changed(*, user: AbstractBaseUser, actor: Any, data: dict[str, str]) -> None:
    user.__dict__.pop("_platform_roles", None)  # the per-request memo in apps.orgs.platform
    audit_record(
        event_type=AuditEvent.Type.MEMBER_ROLE_CHANGED,
        org=None,
        actor=actor,
        target_type="user",
        target_id=user.pk,
        data=data,
    )


def user_create(*, email: str, password: str | None = None, **extra: Any) -> Any:
    """A user whose username is their email (the console signs in by email)."""
    email = User.objects.normalize_email(email.strip())
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "A user with this email exists."})
    return User.objects.create_user(username=email, email=email, password=password, **extra)
