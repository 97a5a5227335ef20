"""Numbers as the plan page shows them: thousands separated, prices in dollars."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def limit_number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


@register.filter
def dollars(cents: int) -> str:
    return "Free" if not cents else f"${cents / 100:,.0f}" if cents % 100 == 0 else f"${cents / 100:,.2f}"


@register.filter
def high_mark(limit: int) -> int:
    """Where a <meter> turns to warning: 80% of the limit."""
    return int(limit * 0.8)
