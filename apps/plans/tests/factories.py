"""Plans with small limits, so a test reaches them in a few calls."""

from __future__ import annotations

from itertools import count
from typing import Any

from django.utils import timezone

from apps.orgs.models import Organisation
from apps.plans.catalogue import CATALOGUE
from apps.plans.models import Plan, Subscription

_sequence = count(1)


def plan_factory(**limits: Any) -> Plan:
    n = next(_sequence)
    fields = {**CATALOGUE[0], "slug": f"test-{n}", "name": f"Test {n}", "sort_order": 100 + n, **limits}
    return Plan.objects.create(**fields)


def org_factory(*, plan: Plan | None = None) -> Organisation:
    n = next(_sequence)
    org = Organisation.objects.create(slug=f"org-{n}", name=f"Org {n}")
    if plan is not None:
        Subscription.objects.create(org=org, plan=plan, since=timezone.now())
    return org
