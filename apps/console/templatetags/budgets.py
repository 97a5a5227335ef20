"""``{% budget_card org role key_id %}``: the budget card of the org (no key) or of one key."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from apps.console.budget_pages import budget_context
from apps.plans.limit_decision import usd_text

register = template.Library()


@register.inclusion_tag("console/budgets/_card.html")
def budget_card(org: Any, role: str, key_id: int | None = None) -> dict[str, Any]:
    return budget_context(org=org, role=role, key_id=key_id)


@register.filter
def usd(amount: Any) -> str:
    """``$1,234.50``: cents at least, sub-cent places kept (``$0.0005``)."""
    return usd_text(Decimal(amount))
