"""Changes to the plan catalogue and to an organisation's plan, and the plan caps on keys and members."""

from __future__ import annotations

from typing import Any, Literal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.orgs.exceptions import PermissionDenied, ValidationError
from apps.orgs.models import AuditEvent, Organisation
from apps.orgs.services import audit_record
from apps.plans.models import Plan, Subscription
from apps.plans.selectors import LIMIT_FIELDS, plan_cache, subscription_for_org

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
    audit_record(
        event_type=AuditEvent.Type.PLAN_CHANGED,
        org=org,
        actor=actor,
        target_type="plan",
        target_id=plan.slug,
        data={"from": previous.slug, "to": plan.slug},
    )
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
    audit_record(
        event_type=AuditEvent.Type.PLAN_EDITED,
        org=None,
        actor=actor,
        target_type="plan",
        target_id=plan.slug,
        data={"changes": edited},
    )
    _evict_on_commit(None)
    return plan


def enforce_cap(*, org: Organisation | None, what: Literal["keys", "members"]) -> None:
    """Refuse (403) one more key or member when the org already holds what its plan allows.

    Call it inside the creating service's transaction: the subscription row is locked,
    so two concurrent creations cannot both slip under the cap. ``org=None`` (a staff
    key outside any organisation) has no plan and no cap.
    """
    if org is None:
        return
    from apps.keys.models import ApiKey
    from apps.orgs.models import Membership

    limit_field, noun, remedy = _CAP_WORDING[what]
    subscription_for_org(org.pk)
    plan = Subscription.objects.select_for_update().select_related("plan").get(org=org).plan
    cap: int | None = getattr(plan, limit_field)
    if cap is None:
        return
    if what == "keys":
        # Keys that no longer work (revoked, expired, past their rotation grace) do not count.
        now = timezone.now()
        held = (
            ApiKey.objects.filter(org=org, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .filter(Q(grace_until__isnull=True) | Q(grace_until__gt=now))
            .count()
        )
    else:
        held = Membership.objects.filter(org=org).count()
    if held >= cap:
        noun = noun if cap != 1 else noun[:-1]
        raise PermissionDenied(f"Plan {plan.name} allows {cap} {noun}; {remedy}")
