"""Reads about accounts and sign-in policy; each scoped to a user or an org."""

from __future__ import annotations

from typing import Any

from allauth.mfa.models import Authenticator

from apps.accounts.models import OrgSecurity
from apps.orgs.models import Membership, Organisation


def org_requires_two_factor(*, org: Organisation) -> bool:
    return OrgSecurity.objects.filter(org=org, require_two_factor=True).exists()


def user_has_two_factor(*, user: Any) -> bool:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def orgs_requiring_two_factor_of(*, user: Any) -> list[Organisation]:
    """The user's organisations whose owners require two-factor sign-in."""
    memberships = Membership.objects.select_related("org").filter(user=user, org__security__require_two_factor=True)
    return [membership.org for membership in memberships]


def two_factor_setup_required(*, user: Any) -> bool:
    """True while the user belongs to an org that requires two-factor sign-in and has not set it up."""
    if not getattr(user, "is_authenticated", False):
        return False
    required = Membership.objects.filter(user=user, org__security__require_two_factor=True).exists()
    return required and not user_has_two_factor(user=user)


def org_members_without_two_factor(*, org: Organisation) -> list[Membership]:
    """Members who would be sent to set up two-factor sign-in if the org required it; one query."""
    with_totp = Authenticator.objects.filter(type=Authenticator.Type.TOTP).values("user_id")
    return list(
        Membership.objects.select_related("user").filter(org=org).exclude(user_id__in=with_totp).order_by("user__email")
    )
