"""Monthly budgets of an org and of its keys: set and removed by owners and admins.

A hard budget is enforced by the gateway (the ``budget`` bucket of
:mod:`apps.plans.limit_decision`) from the plan snapshot, so every change evicts the org's
snapshot; a soft one only alerts. The alerts themselves (50, 80, 100 %, once per month)
are sent off the request path by :mod:`apps.requestlog.budget_alerts`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Model

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.orgs.models import Organisation
from apps.plans.models import Budget
from apps.plans.services import evict_on_commit

THRESHOLDS = (50, 80, 100)


def key_of_org(*, org: Organisation, key_id: int) -> Model | None:
    """The org's API key ``key_id``, through the budget's own relation (plans sits below keys)."""
    key_model = Budget._meta.get_field("api_key").related_model
    return key_model._default_manager.filter(pk=key_id, org=org).first()  # type: ignore[union-attr]


def budget_of(*, org: Organisation, key_id: int | None) -> Budget | None:
    return Budget.objects.filter(org=org, api_key_id=key_id).first()


@transaction.atomic
def budget_set(*, org: Organisation, key_id: int | None, monthly_usd: Decimal, hard: bool, actor: Any) -> Budget:
    """Create or change the org's budget (``key_id`` None) or one key's; applies from the next request."""
    # The org's row serialises budget writes: two first PUTs cannot both insert (a unique violation, a 500).
    Organisation.objects.select_for_update().filter(pk=org.pk).first()
    budget = Budget.objects.filter(org=org, api_key_id=key_id).first()
    before = None if budget is None else {"monthly_usd": str(budget.monthly_usd), "hard": budget.hard}
    if budget is None:
        budget = Budget(org=org, api_key_id=key_id)
    budget.monthly_usd = monthly_usd
    budget.hard = hard
    after = {"monthly_usd": str(monthly_usd), "hard": hard}
    if before == after:
        return budget
    budget.save()
    audit(actor, AuditEvent.Type.BUDGET_CHANGED, budget, org=org, data={"key_id": key_id, "from": before, "to": after})
    evict_on_commit(org.pk)
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget, actor: Any) -> None:
    before = {"monthly_usd": str(budget.monthly_usd), "hard": budget.hard}
    audit(
        actor,
        AuditEvent.Type.BUDGET_CHANGED,
        budget,
        org=budget.org,
        data={"key_id": budget.api_key_id, "from": before, "to": None},
    )
    org_id = budget.org_id
    budget.delete()
    evict_on_commit(org_id)
