"""Every change to organisations, memberships, ownership and platform roles (invitations:
:mod:`apps.orgs.invitations`).

Each service runs in one transaction and writes its audit event, so a rule and its
record are never separated. Role checks of *who may call* a service live in the API's
base view (``apps.orgs.permissions``); the services enforce the invariants that hold
whoever calls them (an org keeps an owner, ...). The apps above orgs hear of joining and
leaving members through :mod:`apps.orgs.signals` (the plan's cap, the member's keys).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.orgs.models import Membership, Organisation, PlatformRole, Role
from apps.orgs.signals import member_joining, member_leaving
from pendra_console.api.exceptions import Conflict, NotFound, ValidationError

User = get_user_model()

_SLUG_ATTEMPTS = 20


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
    audit(owner, AuditEvent.Type.ORG_CREATED, org, data={"slug": org.slug, "name": org.name})
    audit(owner, AuditEvent.Type.MEMBER_ADDED, membership, data={"user_id": owner.pk, "role": Role.OWNER})
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
        audit(actor, AuditEvent.Type.ORG_CHANGED, org, data=changes)
    return org


@transaction.atomic
def org_delete(*, org: Organisation, actor: Any) -> None:
    """Delete the org with its memberships and keys; the audit line outlives it (org=None)."""
    audit(actor, AuditEvent.Type.ORG_DELETED, org, org=None, data={"slug": org.slug, "name": org.name})
    org.delete()


# --- Memberships ---------------------------------------------------------------


def valid_role(role: str) -> Role:
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}; use one of: {', '.join(Role.values)}."})
    return Role(role)


def _lock_owners(org: Organisation) -> int:
    """Lock the org's owner rows and count them, so two demotions cannot both pass the check."""
    return len(list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER).values_list("pk")))


@transaction.atomic
def membership_add(*, org: Organisation, user: Any, role: str, actor: Any) -> Membership:
    role = valid_role(role)
    if Membership.objects.filter(org=org, user=user).exists():
        raise ValidationError({"email": "This user is already a member of the organisation."})
    member_joining.send(sender=Organisation, org=org)  # plans: the plan's cap on members (403 naming it)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(org=org, user=user, role=role)
    except IntegrityError:
        raise ValidationError({"email": "This user is already a member of the organisation."}) from None
    audit(actor, AuditEvent.Type.MEMBER_ADDED, membership, data={"user_id": user.pk, "role": role})
    return membership


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor: Any) -> Membership:
    role = valid_role(role)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    previous = membership.role
    if previous == role:
        return membership
    if previous == Role.OWNER and _lock_owners(membership.org) <= 1:
        raise ValidationError({"role": "An organisation must keep at least one owner; transfer ownership first."})
    membership.role = role
    membership.save(update_fields=["role"])
    audit(
        actor,
        AuditEvent.Type.MEMBER_ROLE_CHANGED,
        membership,
        data={"user_id": membership.user_id, "from": previous, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Any) -> None:
    """Remove a member and revoke their keys in the org: a former member's key must not keep working."""
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    org = membership.org
    if membership.role == Role.OWNER and _lock_owners(org) <= 1:
        raise ValidationError({"member": "An organisation must keep at least one owner; transfer ownership first."})
    member_leaving.send(sender=Organisation, org=org, user_id=membership.user_id, actor=actor)  # keys: revoked
    audit(actor, AuditEvent.Type.MEMBER_REMOVED, membership, data={"user_id": membership.user_id})
    membership.delete()


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
    audit(
        actor,
        AuditEvent.Type.OWNERSHIP_TRANSFERRED,
        target,
        data={"to_user_id": target.user_id, "from_user_id": actor.pk, "previous_role": previous},
    )
    return target


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


def _platform_role_changed(*, user: AbstractBaseUser, actor: Any, data: dict[str, str]) -> None:
    user.__dict__.pop("_platform_roles", None)  # the per-request memo in apps.orgs.platform
    audit(actor, AuditEvent.Type.MEMBER_ROLE_CHANGED, user, org=None, data=data)


def user_create(*, email: str, password: str | None = None, **extra: Any) -> Any:
    """A user whose username is their email (the console signs in by email)."""
    email = User.objects.normalize_email(email.strip())
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "A user with this email exists."})
    return User.objects.create_user(username=email, email=email, password=password, **extra)
