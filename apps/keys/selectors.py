"""Reads of API keys, always scoped to an org (and, for members, to their own keys)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.keys.models import ApiKey
from apps.orgs.models import Membership, Organisation, Role


def org_keys(*, org: Organisation, user: Any = None) -> QuerySet[ApiKey]:
    """The org's keys; only ``user``'s when given (what a member may see)."""
    keys = ApiKey.objects.select_related("user", "successor").filter(org=org)
    if user is not None:
        keys = keys.filter(user=user)
    return keys.order_by("-created_at", "-id")


def org_key(*, org: Organisation, key_id: int) -> ApiKey | None:
    return ApiKey.objects.select_related("user", "org").filter(org=org, pk=key_id).first()


def user_keys(*, user: Any) -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("org").filter(user=user).order_by("-created_at", "-id")


def org_owner_ids(*, org: Organisation) -> frozenset[int]:
    """The org's owners' user ids: an admin manages every key but theirs (apps.keys.permissions)."""
    return frozenset(Membership.objects.filter(org=org, role=Role.OWNER).values_list("user_id", flat=True))
