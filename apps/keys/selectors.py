"""Reads of API keys, always scoped to an org (and, for members, to their own keys)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

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


def org_owner_ids(*, org: Organisation) -> frozenset[int]:
    """The org's owners' user ids: an admin manages every key but theirs (apps.keys.permissions)."""
    return frozenset(Membership.objects.filter(org=org, role=Role.OWNER).values_list("user_id", flat=True))


def org_usable_key_count(*, org: Organisation, user: Any = None) -> int:
    """Keys that work right now (not revoked, expired, past their rotation grace or awaiting reveal)."""
    return org_keys(org=org, user=user).usable_at(timezone.now()).count()


def org_held_key_count(*, org: Organisation) -> int:
    """Keys the org holds against its plan's cap: keys that no longer work (revoked, expired,
    past their rotation grace) do not count; a successor awaiting its reveal does."""
    return ApiKey.objects.filter(org=org).held_at(timezone.now()).count()


def keys_by_public_id(public_ids: set[str]) -> dict[str, ApiKey]:
    """Keys by their public ids, with org and user: what a request record names when its key
    was refused. Only for the record and platform staff's lookup, never an org's listing."""
    if not public_ids:
        return {}
    keys = ApiKey.objects.select_related("org", "user").filter(public_id__in=public_ids)
    return {key.public_id: key for key in keys}


def key_user_ids(key_ids: set[int]) -> dict[int, int]:
    """Each key's user, by key id: whose usage a key's billed requests are, for the roll-ups."""
    if not key_ids:
        return {}
    return dict(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", "user_id"))


def org_keys_by_id(*, org: Organisation, key_ids: set[int]) -> dict[int, ApiKey]:
    """The org's keys among these ids (revoked ones too: reports name the keys that were used)."""
    return ApiKey.objects.filter(org=org).in_bulk(key_ids - {0}) if key_ids else {}
