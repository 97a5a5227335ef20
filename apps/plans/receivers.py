"""The plan's cap on members, applied when the orgs app announces a joining member.

Connected in ``PlansConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from apps.orgs.selectors import member_count
from apps.orgs.signals import member_joining
from apps.plans.services import enforce_cap


@receiver(member_joining, dispatch_uid="plans.refuse_members_past_the_cap")
def refuse_members_past_the_cap(sender: Any, *, org: Any, **kwargs: Any) -> None:
    enforce_cap(org=org, what="members", held=lambda: member_count(org=org))
