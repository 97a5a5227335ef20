"""Pendra's platform staff roles (support, operator), kept as Django groups."""

from __future__ import annotations

from typing import Any

from apps.orgs.models import PlatformRole


def ensure_platform_groups(group_model: Any) -> None:
    for role in PlatformRole:
        group_model.objects.get_or_create(name=role.value)


def has_platform_role(user: Any, role: PlatformRole) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    names = getattr(user, "_platform_roles", None)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        user._platform_roles = names
    return role.value in names


def confine_to_org(user: Any) -> None:
    """This request's ``user`` acts through an org's API key: it has no platform role.

    A key made in an org is a credential for that org only, so a support or operator
    user's org key must not carry their staff powers (only a staff key, made outside any
    org, does). ``user`` is the row loaded for this one request, so nothing else sees it.
    """
    user._platform_roles = set()


def is_support(user: Any) -> bool:
    return has_platform_role(user, PlatformRole.SUPPORT)


def is_operator(user: Any) -> bool:
    return has_platform_role(user, PlatformRole.OPERATOR)
