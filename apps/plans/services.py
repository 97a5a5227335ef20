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
from apps.orgs.platform import is_operator
from apps.plans.models import Plan, Price, Subscription
from apps.plans.selectors import LIMIT_FIELDS, effective_limits, plan_cache, subscription_for_org
from pendra_console import epochs
from pendra_console.api.exceptions import PermissionDenied, ValidationError

# What an operator may edit besides the limits; the slug is the plan's identity and stays.
EDITABLE_FIELDS: frozenset[str] = frozenset({"name", "monthly_price_cents", "sort_order", "is_public", *LIMIT_FIELDS})

_CAP_WORDING = {
    "keys": ("max_keys", "API keys", "revoke one or upgrade"),
    "members": ("max_members", "members", "remove one or upgrade"),
}


# Limits an override may lift to unlimited (null), like the plan's own caps.
NULLABLE_LIMITS: frozenset[str] = frozenset({"max_keys", "max_members"})
MAX_LIMIT = 2**31 - 1


def evict_on_commit(org_id: int | None) -> None:
    """Evict now and again after commit: between the two another thread may have re-read the old plan.
    Other processes drop theirs when the plans' epoch moves, after the commit."""

    def evict() -> None:
        if org_id is None:
            plan_cache.clear()
        else:
            plan_cache.evict(org_id)

    evict()
    transaction.on_commit(evict)
    epochs.changed(epochs.PLANS)


@transaction.atomic
def subscription_change(*, org: Organisation, plan: Plan, actor: Any) -> Subscription:
    """Move the org to ``plan``; its limits apply from the next request.

    An owner may choose only a self-serve plan, and may not leave one an operator set
    (a dedicated or enterprise deal); operators may set any. A move drops the per-org
    overrides, which were made for the plan being left.
    """
    operator = is_operator(actor)
    if not operator and not plan.self_serve:
        raise PermissionDenied(f"Plan {plan.name} is set by a Pendra operator; talk to sales to move to it.")
    subscription_for_org(org.pk)  # created on the default plan if the org never had one
    subscription = Subscription.objects.select_for_update().select_related("plan").get(org=org)
    previous = subscription.plan
    if previous.pk == plan.pk:
        return subscription
    if not operator and not previous.self_serve:
        raise PermissionDenied(f"Plan {previous.name} was set by a Pendra operator; talk to sales to change it.")
    data: dict[str, Any] = {"from": previous.slug, "to": plan.slug}
    if subscription.overrides:
        data["overrides_dropped"] = subscription.overrides
    subscription.plan = plan
    subscription.since = timezone.now()
    subscription.overrides = {}
    subscription.save(update_fields=["plan", "since", "overrides"])
    audit(actor, AuditEvent.Type.PLAN_CHANGED, plan, org=org, data=data)
    evict_on_commit(org.pk)
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
    evict_on_commit(None)
    return plan


@transaction.atomic
def overrides_set(*, org: Organisation, overrides: dict[str, Any], actor: Any) -> Subscription:
    """An operator replaces the org's per-org limits over its plan's: ``{limit: value}``, each an
    integer, or ``None`` (unlimited) for the caps ``max_keys``/``max_members``; a limit left out
    is the plan's. Applies from the org's next request, in every process within a second."""
    unknown = sorted(set(overrides) - set(LIMIT_FIELDS))
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, f"Not a plan limit; one of: {', '.join(LIMIT_FIELDS)}."))
    for name, value in overrides.items():
        if value is None and name in NULLABLE_LIMITS:
            continue
        if type(value) is not int or not 0 <= value <= MAX_LIMIT:
            allowed = f"an integer from 0 to {MAX_LIMIT}" + (
                ", or null for unlimited" if name in NULLABLE_LIMITS else ""
            )
            raise ValidationError({name: f"Must be {allowed}."})
    if "api_rpm" in overrides and overrides["api_rpm"] == 0:
        raise ValidationError({"api_rpm": "Must be at least 1: the org must keep its admin API."})
    subscription_for_org(org.pk)
    subscription = Subscription.objects.select_for_update().select_related("plan").get(org=org)
    before = dict(subscription.overrides or {})
    if before == overrides:
        return subscription
    subscription.overrides = dict(overrides)
    subscription.save(update_fields=["overrides"])
    audit(actor, AuditEvent.Type.PLAN_CHANGED, subscription.plan, org=org, data={"overrides": [before, overrides]})
    evict_on_commit(org.pk)
    return subscription


PRICE_FIELDS = ("input_per_million", "output_per_million", "per_unit")


@transaction.atomic
def price_set(*, plan: Plan, kind: str, model_pattern: str, actor: Any, **prices: Any) -> Price:
    """Create or change one price row of ``plan``; every org on it is priced with it from its next request."""
    price, created = Price.objects.select_for_update().get_or_create(plan=plan, kind=kind, model_pattern=model_pattern)
    edited = {
        name: [str(getattr(price, name)), str(value)] for name, value in prices.items() if getattr(price, name) != value
    }
    if not edited and not created:
        return price
    for name, value in prices.items():
        setattr(price, name, value)
    price.save()
    data = {"price": {"kind": kind, "model_pattern": model_pattern, "created": created, "changes": edited}}
    audit(actor, AuditEvent.Type.PLAN_EDITED, plan, data=data)
    evict_on_commit(None)
    return price


@transaction.atomic
def price_delete(*, price: Price, actor: Any) -> None:
    data = {"price": {"kind": price.kind, "model_pattern": price.model_pattern, "deleted": True}}
    audit(actor, AuditEvent.Type.PLAN_EDITED, price.plan, data=data)
    price.delete()
    evict_on_commit(None)


def enforce_cap(*, org: Organisation, what: Literal["keys", "members"], held: Callable[[], int]) -> None:
    """Refuse (403) one more key or member when the org already holds what its plan allows.

    Call it inside the creating service's transaction. ``held`` is the owning app's count,
    called once the subscription row is locked, so two concurrent creations cannot both
    slip under the cap.
    """
    limit_field, noun, remedy = _CAP_WORDING[what]
    subscription_for_org(org.pk)
    subscription = Subscription.objects.select_for_update().select_related("plan").get(org=org)
    plan = subscription.plan
    cap: int | None = effective_limits(subscription)[limit_field]
    if cap is None:
        return
    count = held()
    if count >= cap:
        noun = noun if cap != 1 else noun[:-1]
        raise PermissionDenied(f"Plan {plan.name} allows {cap} {noun}; {remedy}")
