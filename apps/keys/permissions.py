"""Who may do what to one API key: the rule every surface (admin API, console) asks.

A secret acts as its key's user, so nobody may obtain a secret that acts as someone
else: only the key's own user creates, rotates-with-a-new-secret or reveals it. Owners
and admins manage (rename, set expiry and rotation schedule, rotate without seeing the
successor's secret, revoke) the keys of others; an admin not those of an owner, since
that would let an admin cut an owner's access. Members see and manage their own keys.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from apps.keys.models import ApiKey
from apps.orgs.models import Role, role_at_least

OTHERS_KEY_DETAIL = "Managing another member's key requires the owner or admin role."
OWNERS_KEY_DETAIL = "Only an owner may manage an owner's key."
OWN_USER_ONLY_DETAIL = "Only the key's own user may see its secret."


@dataclass(frozen=True, slots=True)
class KeyAccess:
    see: bool
    manage: bool  # rename, expiry, rotation schedule, rotate (successor revealed by its user), revoke
    obtain_secret: bool  # rotate with the new secret shown, reveal a scheduled successor

    @classmethod
    def none(cls) -> KeyAccess:
        return cls(see=False, manage=False, obtain_secret=False)

    def manage_refusal(self) -> str | None:
        """Why this caller may not manage the key (the 403 detail), or None when they may."""
        if not self.see:
            return OTHERS_KEY_DETAIL
        return None if self.manage else OWNERS_KEY_DETAIL


def key_access(*, key: ApiKey, user_id: int, role: str, owner_ids: Collection[int]) -> KeyAccess:
    """What a caller with ``role`` in the key's org may do to ``key``.

    ``owner_ids`` are the user ids of the org's owners (see
    :func:`apps.keys.selectors.org_owner_ids`), read once for a whole page of keys.
    """
    if key.user_id == user_id:
        return KeyAccess(see=True, manage=True, obtain_secret=True)
    if not role_at_least(role, Role.ADMIN):
        return KeyAccess.none()
    manage = role == Role.OWNER or key.user_id not in owner_ids
    return KeyAccess(see=True, manage=manage, obtain_secret=False)
