"""Budget settings on the org page and on each key's page: the monthly budget, this month's
spend, and the owner's or admin's form to set or remove it (the admin API's own services)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from redis.exceptions import RedisError

from apps.console.access import OrgPage, ServiceRefused, service_call
from apps.orgs.models import Organisation, Role, role_at_least
from apps.plans import budgets
from apps.plans.limit_decision import spend_keys
from apps.plans.pricing import period_of, usd_of_units


class BudgetForm(forms.Form):
    monthly_usd = forms.DecimalField(
        label="Monthly budget (USD)", max_digits=14, decimal_places=4, min_value=Decimal("0.0001")
    )
    hard = forms.BooleanField(
        label="Refuse requests once spent (hard budget)",
        required=False,
        help_text="Unticked: alerts only, at 50, 80 and 100 %, by email to owners and admins and by webhook.",
    )


def budget_context(*, org: Organisation, role: str, key_id: int | None) -> dict[str, Any]:
    """What the budget card shows: the budget, this month's spend (None: unknown now), the form."""
    budget = budgets.budget_of(org=org, key_id=key_id)
    org_counter, key_counter = spend_keys(org.pk, key_id)
    try:
        spent: Decimal | None = usd_of_units(int(cache.get(key_counter or org_counter, 0)))
    except (RedisError, OSError):
        spent = None
    initial = {"monthly_usd": budget.monthly_usd, "hard": budget.hard} if budget else {}
    return {
        "org": org,
        "budget": budget,
        "spent": spent,
        "period": period_of(),
        "key_id": key_id,
        "can_edit": role_at_least(role, Role.ADMIN),
        "form": BudgetForm(initial=initial),
    }


class _BudgetSet(OrgPage):
    scope_map = {"POST": Role.ADMIN}
    http_method_names = ["post"]

    def _save(self, request: HttpRequest, key_id: int | None, back: HttpResponse) -> HttpResponse:
        if "remove" in request.POST:
            budget = budgets.budget_of(org=self.org, key_id=key_id)
            if budget is not None:
                budgets.budget_delete(budget=budget, actor=request.user)
                messages.success(request, "Budget removed.")
            return back
        form = BudgetForm(request.POST)
        if not form.is_valid():
            for field, errors in form.errors.items():
                for error in errors:
                    messages.error(request, f"{form.fields[field].label if field in form.fields else field}: {error}")
            return back
        try:
            with service_call(request, form):
                budgets.budget_set(org=self.org, key_id=key_id, actor=request.user, **form.cleaned_data)
        except ServiceRefused:
            return back
        messages.success(request, "Budget saved; it applies from the next request.")
        return back


class OrgBudgetSet(_BudgetSet):
    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        return self._save(request, None, redirect("console:org-overview", slug=self.org.slug))


class KeyBudgetSet(_BudgetSet):
    def post(self, request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
        key = budgets.key_of_org(org=self.org, key_id=key_id)
        if key is None:
            raise Http404("API key not found.")
        return self._save(request, key_id, redirect("console:key-detail", slug=self.org.slug, key_id=key_id))
