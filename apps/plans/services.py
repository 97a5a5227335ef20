"""Changes to the plan catalogue and to an organisation's plan, and the plan caps on keys and members.

A cap counts rows another app owns, so that app gives the count (keys: its
``org_held_key_count``; orgs: its ``member_count``, via :mod:`apps.plans.receivers`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.orgs.models import Organisation
from apps.plans.models import Plan, Subscription
from apps.plans.selectors import LIMIT_FIELDS, plan_cache, subscription_for_org
from pendra_console.api.exceptions import PermissionDenied, ValidationError

# What an operator may edit besides the limits; the slug is the plan's identity and stays.
EDITABLE_FIELDS: frozenset[str] = frozenset({"name", "monthly_price_cents", "sort_order", "is_public", *LIMIT_FIELDS})

_CAP_WORDING = {
    "keys": ("max_keys", "API keys", "revoke one or upgrade"),
    "members": ("max_members", "members", "remove one or upgrade"),
}


def _evict_on_commit(org_id: int | None) -> None:
    """Evict now and again after commit: between the two another thread may have re-read the old plan."""

    def evict() -> None:
        if org_id is None:
            plan_cache.clear()
        else:
            plan_cache.evict(org_id)

    evict()
    transaction.on_commit(evict)


@transaction.atomic
def subscription_change(*, org: Organisation, plan: Plan, actor: Any) -> Subscription:
    """Move the org to ``plan``; its limits apply from the next request."""
    subscription_for_org(org.pk)  # created on the default plan if the org never had one
    subscription = Subscription.objects.select_for_update().select_related("plan").get(org=org)
    previous = subscription.plan
    if previous.pk == plan.pk:
        return subscription
    subscription.plan = plan
    subscription.since = timezone.now()
    subscription.save(update_fields=["plan", "since"])
    audit(actor, AuditEvent.Type.PLAN_CHANGED, plan, org=org, data={"from": previous.slug, "to": plan.slug})
    _evict_on_commit(org.pk)
    return subscription


@transaction.atomic
def plan_update(*, plan: Plan, actor: Any, **changes: Any) -> Plan:
    """An operator's edit of a catalogue plan; every org on it gets the new limits from its next request."""
    unknown = sorted(set(changes) - EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This plan field cannot be edited."))
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    edited = {name: [getattr(plan, name), value] for name, value in changes.items() if getattr(plan, name) != value}
    if not edited:
        return plan
    for name, (_, value) in edited.items():
        setattr(plan, name, value)
    plan.save(update_fields=[*edited, "updated_at"])
    audit(actor, AuditEvent.Type.PLAN_EDITED, plan, data={"changes": edited})
    _evict_on_commit(None)
    return plan


def enforce_cap(*, org: Organisation, what: Literal["keys", "members"], held: Callable[[], int]) -> None:
    """Refuse (403) one more key or member when the org already holds what its plan allows.

    Call it inside the creating service's transaction. ``held`` is the owning app's count,
    called once the subscription row is locked, so two concurrent creations cannot both
    slip under the cap.
    """
    limit_field, noun, remedy = _CAP_WORDING[what]
    subscription_for_org(org.pk)
    plan = Subscription.objects.select_for_update().select_related("plan").get(org=org).plan
    cap: int | None = getattr(plan, limit_field)
    if cap is None:
        return
    count = held()
    if count >= cap:
        noun = noun if cap != 1 else noun[:-1]
        raise PermissionDenied(f"Plan {plan.name} allows {cap} {noun}; {remedy}")
