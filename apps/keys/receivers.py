"""What keys do when something they depend on changes elsewhere; connected in ``KeysConfig.ready``.

The orgs app sits below keys and does not import it, so it announces a leaving member
with a signal (:mod:`apps.orgs.signals`) and keys revokes that member's keys, in the
same transaction.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from apps.keys.authentication import key_cache
from apps.keys.models import ApiKey
from apps.keys.services import api_keys_revoke_for_member
from apps.orgs.signals import member_leaving


@receiver(member_leaving, dispatch_uid="keys.revoke_leaving_members_keys")
def revoke_leaving_members_keys(sender: Any, *, org: Any, user_id: int, actor: Any, **kwargs: Any) -> None:
    api_keys_revoke_for_member(org=org, user_id=user_id, actor=actor)


@receiver(post_delete, sender=ApiKey, dispatch_uid="keys.forget_deleted_key")
def forget_deleted_key(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    """A deleted key (its org deleted, say) is forgotten by this process's gateway cache at once."""
    key_cache.evict_now_and_on_commit(instance.public_id)
